-- Live progress: every change a watcher can see is announced on the channel
-- `workflow_progress`, from triggers, so every writer (the embedded runner in any process, the
-- Inngest runner, the API) is covered and announcements arrive in commit order. Payloads carry
-- ids only; each process LISTENs once and reads a changed row once for all its watchers
-- (src/blueprint_engine/services/progress_hub.py).
--
--   a log row          {"log": <id>, "run": <run id>}
--   a run's status     {"run": <run id>, "workflow": <workflow id>, "owner": <owner id>,
--                       "seq": <change_seq>}
--   a session message  {"message": <id>, "session": <session id>, "seq": <change_seq>}
--
-- `change_seq` orders the changes of runs (per workflow, per owner) and of session messages,
-- so their streams can resume after the last one seen (the SSE id). A run's log rows need no
-- such column: they are written under the run's row lock (the lease fence), so their ids already
-- follow commit order within a run.
create sequence progress_change_seq;

alter table workflow_runs
    add column change_seq bigint not null default nextval('progress_change_seq');
create index workflow_runs_changes_idx on workflow_runs (workflow_id, change_seq);
create index workflow_runs_owner_changes_idx on workflow_runs (owner_id, change_seq);

alter table session_messages
    add column change_seq bigint not null default nextval('progress_change_seq');
create index session_messages_changes_idx on session_messages (session_id, change_seq);

create function announce_log_row() returns trigger
language plpgsql as $$
begin
    perform pg_notify('workflow_progress',
        json_build_object('log', new.id, 'run', new.run_id)::text);
    return null;
end;
$$;
create trigger workflow_logs_announce
    after insert on workflow_logs
    for each row execute function announce_log_row();

-- Only status changes are news (a heartbeat extends the lease many times a minute).
create function announce_run_change() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        if new.status is not distinct from old.status then
            return new;
        end if;
        new.change_seq := nextval('progress_change_seq');
    end if;
    perform pg_notify('workflow_progress',
        json_build_object('run', new.id, 'workflow', new.workflow_id, 'owner', new.owner_id,
                          'seq', new.change_seq)::text);
    return new;
end;
$$;
create trigger workflow_runs_announce
    before insert or update of status on workflow_runs
    for each row execute function announce_run_change();

-- An outbound reply is inserted empty and filled when delivered; an inbound message is
-- annotated with what was understood: each update is news.
create function announce_message_change() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        new.change_seq := nextval('progress_change_seq');
    end if;
    perform pg_notify('workflow_progress',
        json_build_object('message', new.id, 'session', new.session_id, 'seq', new.change_seq)::text);
    return new;
end;
$$;
create trigger session_messages_announce
    before insert or update on session_messages
    for each row execute function announce_message_change();

-- Supabase: the sequence is the server's own, like the tables' identity sequences.
do $$
begin
    if (select count(*) = 2 from pg_roles where rolname in ('anon', 'authenticated')) then
        revoke all on sequence progress_change_seq from anon, authenticated;
    end if;
end;
$$;
