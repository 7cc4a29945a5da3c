-- Archiving a workflow (DELETE /workflows/{id}): it is deactivated, leaves the lists and starts
-- no more runs, but it and its versions stay, so the runs it had stay readable.
alter table workflows add column archived_at timestamptz;

-- The dashboard's list: a user's workflows by last change (runs use workflow_runs_owner_idx).
create index workflows_owner_list_idx on workflows (owner_id, updated_at desc, id desc)
    where archived_at is null;
