-- Accounts: every workflow, run, event, session and message belongs to a user.
--
-- users.id is the Supabase Auth user id (the JWT's `sub`) when Supabase Auth is used. The local
-- user 00000000-0000-0000-0000-000000000001 owns everything when no identity is configured, and
-- everything that existed before this migration. Owners are denormalised onto every table a
-- dashboard may read (one indexed column, no joins in queries or row-level security policies).

create table users (
    id            uuid primary key,
    display_name  text,
    email         text,
    phone         text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
insert into users (id, display_name) values ('00000000-0000-0000-0000-000000000001', 'Local user');

-- Personal API keys: shown once, stored as the SHA-256 of the key (256 random bits, so a fast
-- hash is as good as a slow one); `prefix` is the first characters, for telling keys apart.
create table api_keys (
    id            uuid primary key default gen_random_uuid(),
    user_id       uuid not null references users (id) on delete cascade,
    name          text not null,
    prefix        text not null,
    key_sha256    text not null unique,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
create index api_keys_user_idx on api_keys (user_id, created_at desc);

-- Owners of existing rows. A workflow whose free-form `user_id` (what callers used to write in
-- a body, spec 004) is a UUID -- a Supabase user id -- belongs to that user; any other to the
-- local user, its old `user_id` kept in `legacy_user_id`. Everything a workflow has (versions,
-- runs, their logs and waits, its schedule) follows it; the rest belongs to the local user.
alter table workflows add column legacy_user_id text;
update workflows set legacy_user_id = user_id where user_id is not null;
insert into users (id)
    select distinct user_id::uuid from workflows
     where user_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    on conflict do nothing;

do $$
declare
    owned text;
begin
    foreach owned in array array[
        'workflows', 'workflow_versions', 'workflow_runs', 'workflow_logs', 'run_waits',
        'events', 'workflow_schedules', 'sessions', 'session_messages', 'webhook_deliveries'
    ] loop
        execute format('alter table %I add column owner_id uuid', owned);
    end loop;
end;
$$;

update workflows set owner_id = case
    when user_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    then user_id::uuid else '00000000-0000-0000-0000-000000000001' end;
update workflow_versions v set owner_id = w.owner_id from workflows w where w.id = v.workflow_id;
update workflow_runs r set owner_id = w.owner_id from workflows w where w.id = r.workflow_id;
update workflow_logs l set owner_id = r.owner_id from workflow_runs r where r.id = l.run_id;
update run_waits t set owner_id = r.owner_id from workflow_runs r where r.id = t.run_id;
update workflow_schedules s set owner_id = w.owner_id from workflows w where w.id = s.workflow_id;

do $$
declare
    owned text;
begin
    foreach owned in array array[
        'workflows', 'workflow_versions', 'workflow_runs', 'workflow_logs', 'run_waits',
        'events', 'workflow_schedules', 'sessions', 'session_messages', 'webhook_deliveries'
    ] loop
        execute format(
            'update %I set owner_id = ''00000000-0000-0000-0000-000000000001'''
            ' where owner_id is null', owned);
        execute format('alter table %I alter column owner_id set not null', owned);
        execute format(
            'alter table %I add constraint %I foreign key (owner_id) references users (id)'
            ' on delete cascade', owned, owned || '_owner_fk');
    end loop;
end;
$$;

-- The owner replaces the free-form `user_id` (kept as `legacy_user_id` above).
alter table workflows drop column user_id cascade;  -- and the Supabase policies built on it
drop index if exists workflows_user_idx;
create index workflows_owner_idx on workflows (owner_id, created_at desc);
create index workflow_runs_owner_idx on workflow_runs (owner_id, created_at desc, id desc);
create index events_owner_idx on events (owner_id, name, created_at desc);

-- Idempotency keys are per owner: user B's key "abc" must not find user A's run.
alter table workflow_runs drop constraint workflow_runs_idempotency_key_key;
create unique index workflow_runs_idempotency_idx on workflow_runs (owner_id, idempotency_key);

-- A conversation is per owner: a voice session id of another user is a fresh session of yours.
drop index sessions_one_open_idx;
drop index sessions_user_idx;
create unique index sessions_one_open_idx on sessions (owner_id, channel, user_ref)
    where status = 'open';
create index sessions_owner_idx on sessions (owner_id, last_activity_at desc);
