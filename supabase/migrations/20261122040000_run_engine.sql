-- Which engine executes a run: the embedded runner claims only its own runs, so an Inngest run is
-- never picked up by `wf worker` or an API process started in embedded mode.
alter table workflow_runs
    add column engine text not null default 'embedded' check (engine in ('embedded', 'inngest'));
