-- One inactivity timer per session: the run of the "session timeout" system blueprint whose
-- delay each new message moves (see session_service.schedule_timeout), instead of a new parked
-- run per message.
alter table sessions
    add column timer_run_id uuid references workflow_runs (id) on delete set null;
