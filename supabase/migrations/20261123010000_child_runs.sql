-- Child runs: a `workflow` node (or a foreach over a saved workflow) starts another of the
-- owner's workflows as a run of its own. The child points at the step that started it, once
-- per step (the unique index makes a replayed start find the same child), and knows how deep
-- the chain is, so a chain longer than SUBWORKFLOW_MAX_DEPTH is refused at run time.
alter table workflow_runs
  add column parent_run_id uuid references workflow_runs (id) on delete set null,
  add column parent_step_id text,
  add column depth integer not null default 0 check (depth >= 0);

create unique index workflow_runs_parent_step_idx
  on workflow_runs (parent_run_id, parent_step_id) where parent_run_id is not null;

-- The parent waits on a run_waits row of kind 'child' (step_id = the starting step).
alter table run_waits drop constraint run_waits_kind_check;
alter table run_waits add constraint run_waits_kind_check
  check (kind in ('sleep', 'event', 'child'));

-- When a child run ends, however it ends (finished, failed by the engine, cancelled), its
-- parent's wait is resolved with {run_id, status, output, error} and an embedded parent that
-- is parked on it becomes claimable at once. In the database, so no path can forget it.
create function resolve_parent_wait() returns trigger
language plpgsql as $$
begin
  update run_waits
     set event = jsonb_build_object('run_id', new.id, 'status', new.status,
                                    'output', new.output, 'error', new.error),
         resolved_at = now()
   where run_id = new.parent_run_id and step_id = new.parent_step_id
     and kind = 'child' and resolved_at is null;
  if found then
    update workflow_runs set status = 'queued', wake_at = null, updated_at = now()
     where id = new.parent_run_id and status = 'waiting' and engine = 'embedded';
  end if;
  return new;
end;
$$;

create trigger workflow_runs_child_ended
  after update of status on workflow_runs
  for each row
  when (new.parent_run_id is not null
        and new.status in ('succeeded', 'failed', 'cancelled')
        and old.status is distinct from new.status)
  execute function resolve_parent_wait();
