-- Webhook triggers: a workflow whose trigger is `webhook` gets its own URL,
-- POST /hooks/{workflow_id}/{token} (src/blueprint_engine/services/hook_service.py).
--
-- The token is shown once, when the hook is made (the first save of a webhook-triggered
-- version) and each time it is rotated; only its SHA-256 is kept, and `token_hint` (its first
-- four characters) tells tokens apart in listings. One hook per workflow: it is the workflow's
-- (and so its owner's), and goes when the workflow is deleted. It answers only while the
-- workflow's active version has a webhook trigger.
--
-- Idempotency-Key needs no table: a hook's run is keyed `hook:<workflow id>:<key>` in
-- workflow_runs' unique (owner_id, idempotency_key), kept as long as the run is.
create table workflow_hooks (
    workflow_id   uuid primary key references workflows (id) on delete cascade,
    token_sha256  text not null check (token_sha256 ~ '^[0-9a-f]{64}$'),
    token_hint    text not null check (length(token_hint) <= 8),
    created_at    timestamptz not null default now(),
    rotated_at    timestamptz,
    last_used_at  timestamptz
);

-- Internal table: on Supabase, row-level security without policies (no access for the anon and
-- authenticated roles; the API reads it as the table owner).
do $$
begin
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table workflow_hooks enable row level security;
    end if;
    if (select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')) then
        revoke all on table workflow_hooks from anon, authenticated;
    end if;
end;
$$;
