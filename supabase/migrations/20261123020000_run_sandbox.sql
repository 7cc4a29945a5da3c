-- A run started in sandbox mode (`wf run --sandbox`) stays sandboxed whichever worker claims
-- it, and so do its child runs: no tool call of it leaves the process.
alter table workflow_runs add column sandbox boolean not null default false;
