-- Conversations on WhatsApp and voice: sessions, every message in and out, and trace ids that
-- link a command's message to its intent and run.

alter table workflows drop constraint workflows_origin_check;
alter table workflows add constraint workflows_origin_check
    check (origin in ('api', 'adhoc', 'draft', 'system', 'channel'));

alter table workflow_runs add column trace_id text;
create index workflow_runs_trace_idx on workflow_runs (trace_id) where trace_id is not null;

create table sessions (
    id                uuid primary key default gen_random_uuid(),
    channel           text not null check (channel in ('whatsapp', 'voice')),
    user_ref          text not null,
    status            text not null default 'open' check (status in ('open', 'closed')),
    state             jsonb not null default '{}'::jsonb,
    last_activity_at  timestamptz not null default now(),
    closed_at         timestamptz,
    summary           text,
    summary_source    text,
    created_at        timestamptz not null default now()
);
create unique index sessions_one_open_idx on sessions (channel, user_ref) where status = 'open';
create index sessions_user_idx on sessions (channel, user_ref, created_at desc);

create table session_messages (
    id                   bigint generated always as identity primary key,
    session_id           uuid not null references sessions (id) on delete cascade,
    direction            text not null check (direction in ('in', 'out')),
    text                 text,
    transcript           text,
    media                jsonb,
    intent               text,
    entities             jsonb,
    trace_id             text,
    provider_message_id  text,
    delivery             text,
    created_at           timestamptz not null default now()
);
create index session_messages_session_idx on session_messages (session_id, id);
create index session_messages_trace_idx on session_messages (trace_id) where trace_id is not null;

do $$
begin
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
        alter publication supabase_realtime add table session_messages;
    end if;
end;
$$;
