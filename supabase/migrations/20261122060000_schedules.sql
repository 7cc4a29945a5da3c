-- Schedule triggers: one row per active schedule-triggered workflow, fired by the API process.
create table workflow_schedules (
    workflow_id   uuid primary key references workflows (id) on delete cascade,
    version       integer not null,
    cron          text not null,
    timezone      text not null default 'UTC',
    next_fire_at  timestamptz not null,
    last_fired_at timestamptz,
    updated_at    timestamptz not null default now()
);
create index workflow_schedules_due_idx on workflow_schedules (next_fire_at);
