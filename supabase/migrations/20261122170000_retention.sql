-- Retention: how long finished runs and closed conversations are kept, and what the pruner
-- walks to remove them (src/blueprint_engine/store/retention.py).
--
-- The deployment's defaults are settings (RETENTION_*_DAYS). A user may override them for all
-- their data (workflow_id null) and for one workflow's runs (workflow_id set); a null column
-- means "inherit": workflow -> owner -> deployment. Conversations are per owner only.
create table retention_policies (
    owner_id             uuid not null references users (id) on delete cascade,
    workflow_id          uuid references workflows (id) on delete cascade,
    succeeded_runs_days  integer check (succeeded_runs_days between 1 and 36500),
    failed_runs_days     integer check (failed_runs_days between 1 and 36500),
    conversations_days   integer check (conversations_days between 1 and 36500),
    updated_at           timestamptz not null default now(),
    check (workflow_id is null or conversations_days is null)
);
create unique index retention_policies_owner_idx on retention_policies (owner_id)
    where workflow_id is null;
create unique index retention_policies_workflow_idx on retention_policies (workflow_id)
    where workflow_id is not null;

-- What the pruner walks, oldest first: finished runs by finish time, closed sessions by close
-- time, events and webhook deliveries by arrival.
create index workflow_runs_finished_idx on workflow_runs (finished_at, id)
    where status in ('succeeded', 'failed', 'cancelled');
create index sessions_closed_idx on sessions (closed_at, id) where status = 'closed';
create index events_created_idx on events (created_at, id);
create index webhook_deliveries_received_idx on webhook_deliveries (received_at, id);
-- ... and the workflows nobody needs once their runs are gone: stored copies of unsaved
-- blueprints and archived workflows.
create index workflows_disposable_idx on workflows (updated_at, id)
    where (origin in ('adhoc', 'channel') or archived_at is not null)
      and active_version is null;

-- Deleting a run sets sessions.timer_run_id to null and deleting an event needs its deliveries
-- gone: without these indexes each deleted row would scan the whole referencing table.
create index sessions_timer_run_idx on sessions (timer_run_id) where timer_run_id is not null;
create index webhook_deliveries_event_idx on webhook_deliveries (event_id)
    where event_id is not null;

-- Erasure finds one owner's rows of each table.
create index webhook_deliveries_owner_idx on webhook_deliveries (owner_id);
create index workflow_schedules_owner_idx on workflow_schedules (owner_id);

-- Internal table: on Supabase, row-level security without policies (no access for the anon and
-- authenticated roles; the API reads it as the table owner).
do $$
begin
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table retention_policies enable row level security;
    end if;
    if (select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')) then
        revoke all on table retention_policies from anon, authenticated;
    end if;
end;
$$;
