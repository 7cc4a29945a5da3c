-- The profile of a run's owner, as it was when the run was queued: templates read it as
-- {{ owner.display_name }}, {{ owner.email }}, {{ owner.phone }}.
--
-- A snapshot rather than a join on users at run time: a run parked for days on a delay or a
-- wait is replayed on every pass, and a replayed step must see what the first pass saw (the
-- step retried after a crash sends to the number the first attempt used, and every step of one
-- run addresses the same person). POST /runs/{id}/retry takes a fresh snapshot.
alter table workflow_runs add column owner_profile jsonb not null default '{}';

update workflow_runs r
   set owner_profile = jsonb_build_object(
         'display_name', u.display_name, 'email', u.email, 'phone', u.phone)
  from users u
 where u.id = r.owner_id;
