-- A signed webhook body is processed once, whatever its unsigned headers say: Razorpay signs
-- only the body, so its event-id header can be changed by anyone replaying a captured delivery.
-- A delivery is a duplicate when its delivery id OR its body hash was seen before (one insert,
-- "on conflict do nothing" over both unique indexes). NULL hashes (Twilio, whose signature
-- covers the MessageSid) never conflict.
alter table webhook_deliveries add column body_sha256 text;
create unique index webhook_deliveries_body_idx on webhook_deliveries (provider, body_sha256);
