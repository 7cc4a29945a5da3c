-- Blueprint engine schema. The only source of the schema; applied by `supabase db push` or `wf migrate`.
-- Supabase-only statements (RLS on auth.uid(), the supabase_realtime publication) are guarded so
-- this file also runs on plain PostgreSQL.

create table workflows (
    id              uuid primary key default gen_random_uuid(),
    user_id         text,
    name            text not null,
    description     text,
    origin          text not null default 'api' check (origin in ('api', 'adhoc', 'draft')),
    latest_version  integer not null default 1,
    active_version  integer,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index workflows_user_idx on workflows (user_id, created_at desc);

-- Immutable: a change to a workflow is a new version.
create table workflow_versions (
    workflow_id     uuid not null references workflows (id) on delete cascade,
    version         integer not null check (version >= 1),
    blueprint       jsonb not null,
    trigger_kind    text not null,
    trigger_event   text,
    created_at      timestamptz not null default now(),
    primary key (workflow_id, version)
);
create index workflow_versions_event_idx on workflow_versions (trigger_event) where trigger_event is not null;

create table workflow_runs (
    id                uuid primary key default gen_random_uuid(),
    workflow_id       uuid not null,
    version           integer not null,
    status            text not null default 'queued'
                      check (status in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    trigger_data      jsonb not null default '{}'::jsonb,
    output            jsonb,
    error             jsonb,
    idempotency_key   text unique,
    lease_owner       text,
    lease_expires_at  timestamptz,
    wake_at           timestamptz,
    created_at        timestamptz not null default now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz not null default now(),
    foreign key (workflow_id, version) references workflow_versions (workflow_id, version) on delete cascade
);
create index workflow_runs_workflow_idx on workflow_runs (workflow_id, created_at desc, id desc);
create index workflow_runs_claim_idx on workflow_runs (coalesce(wake_at, created_at))
    where status in ('queued', 'running', 'waiting');

-- Durable step results: replay returns these instead of running a step again.
create table step_checkpoints (
    run_id      uuid not null references workflow_runs (id) on delete cascade,
    step_id     text not null,
    node_id     text not null,
    status      text not null check (status in ('succeeded', 'failed', 'skipped')),
    output      jsonb,
    error       jsonb,
    created_at  timestamptz not null default now(),
    primary key (run_id, step_id)
);

-- Durable timers (delay) and event waits (wait_for_event).
create table run_waits (
    run_id       uuid not null references workflow_runs (id) on delete cascade,
    step_id      text not null,
    node_id      text not null,
    kind         text not null check (kind in ('sleep', 'event')),
    event_name   text,
    match        text,
    context      jsonb,
    wake_at      timestamptz not null,
    event        jsonb,
    timed_out    boolean not null default false,
    resolved_at  timestamptz,
    created_at   timestamptz not null default now(),
    primary key (run_id, step_id)
);
create index run_waits_open_event_idx on run_waits (event_name) where kind = 'event' and resolved_at is null;

-- One row per step attempt (and per skipped node): what the dashboard watches.
create table workflow_logs (
    id           bigint generated always as identity primary key,
    run_id       uuid not null references workflow_runs (id) on delete cascade,
    node_id      text not null,
    step_id      text not null,
    status       text not null check (status in ('succeeded', 'failed', 'skipped', 'waiting', 'retrying')),
    attempt      integer not null default 1,
    input        jsonb,
    output       jsonb,
    error        jsonb,
    started_at   timestamptz not null default now(),
    finished_at  timestamptz not null default now(),
    duration_ms  double precision not null default 0
);
create index workflow_logs_run_idx on workflow_logs (run_id, id);

create table events (
    id          uuid primary key default gen_random_uuid(),
    name        text not null,
    data        jsonb not null default '{}'::jsonb,
    source      text not null default 'api',
    created_at  timestamptz not null default now()
);
create index events_name_idx on events (name, created_at desc);

create table webhook_deliveries (
    id           bigint generated always as identity primary key,
    provider     text not null,
    delivery_id  text not null,
    event_id     uuid references events (id),
    event_name   text not null,
    received_at  timestamptz not null default now(),
    unique (provider, delivery_id)
);

-- Wake embedded runners (any process LISTENing) when a run becomes claimable.
create function notify_run_queued() returns trigger
language plpgsql as $$
begin
    perform pg_notify('workflow_runs_queued', new.id::text);
    return new;
end;
$$;
create trigger workflow_runs_queued
    after insert or update of status on workflow_runs
    for each row when (new.status = 'queued')
    execute function notify_run_queued();

-- Supabase only: live progress through Realtime, and per-user row security.
do $$
begin
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        alter publication supabase_realtime add table workflow_logs, workflow_runs;
    end if;
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table workflows enable row level security;
        execute 'create policy workflows_owner on workflows for select using (user_id = auth.uid()::text)';
        alter table workflow_runs enable row level security;
        execute 'create policy runs_owner on workflow_runs for select using (exists (select 1 from workflows w where w.id = workflow_id and w.user_id = auth.uid()::text))';
        alter table workflow_logs enable row level security;
        execute 'create policy logs_owner on workflow_logs for select using (exists (select 1 from workflow_runs r join workflows w on w.id = r.workflow_id where r.id = run_id and w.user_id = auth.uid()::text))';
    end if;
end;
$$;
