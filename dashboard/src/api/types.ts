// Shapes of the endpoints the dashboard needs that the generated schema may not have yet.
// (Replaced by generated types once the API ships them.)
export interface WorkflowSummary {
  id: string;
  name: string;
  description?: string | null;
  origin: string;
  active: boolean;
  active_version?: number | null;
  latest_version: number;
  created_at: string;
  updated_at: string;
  last_run?: { id: string; status: string; created_at: string; finished_at?: string | null } | null;
}
export interface WorkflowPage {
  workflows: WorkflowSummary[];
  next_cursor?: string | null;
}
export interface RunSummary {
  id: string;
  workflow_id: string;
  workflow_name?: string | null;
  version: number;
  status: string;
  error?: unknown;
  trace_id?: string | null;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
}
export interface RunPage {
  runs: RunSummary[];
  next_cursor?: string | null;
}
