-- Bounded passes and per-claim leases.
--
-- lease_token: a new value on every claim. Every write of a pass is fenced on it (not on the
--   worker's name), so a pass that lost its lease -- even to a later claim by the same process --
--   can no longer record anything.
-- pass_failures: consecutive passes that ended in an unexpected error or lost their worker
--   (lease expired while running). The runner backs off between them and fails the run with
--   `engine_error` after RUN_MAX_PASS_FAILURES; a pass that completes resets it.
alter table workflow_runs
    add column lease_token uuid,
    add column pass_failures integer not null default 0;

-- How many attempts of a step were started, written (fenced on the lease) before each attempt
-- runs: a replay knows about attempts whose process died mid-flight, so a step never runs more
-- often than its max_attempts, and a worker that lost its lease stops before the side effect.
create table step_attempts (
    run_id      uuid not null references workflow_runs (id) on delete cascade,
    step_id     text not null,
    started     integer not null default 0,
    updated_at  timestamptz not null default now(),
    primary key (run_id, step_id)
);

do $$
begin
    if exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        alter table step_attempts enable row level security;
    end if;
end;
$$;
