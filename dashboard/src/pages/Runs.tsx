// Runs: a live list (GET /runs, then GET /runs/stream), across workflows or for one, filtered
// by status.
import { useEffect, useRef, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { api, unwrap, type RunStatus, type RunSummary } from "../api/client";
import { follow } from "../api/sse";
import { ErrorNote, StatusBadge, When } from "../components/Status";
import { withParam } from "../params";

const STATUSES = ["queued", "running", "waiting", "succeeded", "failed", "cancelled"];

export default function RunsPage() {
  const { id: workflowId } = useParams();
  const [search, setSearch] = useSearchParams();
  const status = search.get("status") ?? "";
  const trace = search.get("trace") ?? "";
  const [runs, setRuns] = useState<RunSummary[]>();
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>();
  const [link, setLink] = useState("connecting…");
  const streamed = useRef(new Map<string, RunSummary>());
  const latest = useRef(0); // answers to an older filter arrive late: drop them

  const wanted = (run: RunSummary) =>
    (!workflowId || run.workflow_id === workflowId) && (!status || run.status === status) && (!trace || run.trace_id === trace);

  const load = async (cursor?: string) => {
    const ticket = ++latest.current;
    const query = {
      limit: 50,
      workflow_id: workflowId,
      status: (status || undefined) as RunStatus | undefined,
      trace_id: trace || undefined,
      cursor,
    };
    try {
      const page = unwrap(await api.GET("/runs", { params: { query } }));
      if (ticket !== latest.current) return;
      // A run the stream already reported is newer than the list's copy of it.
      const rows = page.runs.map((r) => streamed.current.get(r.id) ?? r).filter(wanted);
      setRuns((old) => (cursor ? [...(old ?? []), ...rows] : rows));
      setNext(page.next_cursor ?? null);
    } catch (e) {
      setError(e);
    }
  };

  useEffect(() => {
    streamed.current = new Map();
    const controller = new AbortController();
    follow(
      "/runs/stream",
      {
        onEvent(event, data) {
          if (event !== "run") return;
          const run = data as RunSummary;
          streamed.current.set(run.id, run);
          setRuns((old) => {
            const rest = (old ?? []).filter((r) => r.id !== run.id);
            if (!wanted(run)) return rest;
            const known = old?.some((r) => r.id === run.id);
            return known ? (old ?? []).map((r) => (r.id === run.id ? run : r)) : [run, ...rest];
          });
        },
        onState: (s) => setLink(s === "live" ? "● live" : s === "lost" ? "not live — reload" : "connecting…"),
      },
      controller.signal,
    );
    void load();
    return () => controller.abort();
  }, [workflowId, status, trace]); // load and wanted read only these

  return (
    <section>
      <div className="row wrap">
        <h1 className="grow">{workflowId ? "Runs of this workflow" : "Runs"}</h1>
        <span className="muted small" data-testid="stream-state">{link}</span>
      </div>
      {workflowId && <p><Link to={`/ui/workflows/${workflowId}`}>Back to the canvas</Link> · <Link to="/ui/runs">All runs</Link></p>}
      <label>
        Status{" "}
        <select
          value={status}
          onChange={(e) => setSearch(withParam(search, "status", e.target.value))}
        >
          <option value="">Any</option>
          {STATUSES.map((s) => (<option key={s} value={s}>{s}</option>))}
        </select>
      </label>
      <ErrorNote error={error} />
      {runs && runs.length === 0 && <p className="muted">No runs{status ? ` with status ${status}` : ""}.</p>}
      {runs && runs.length > 0 && (
        <div className="table-wrap">
          <table className="list" aria-live="polite">
            <thead>
              <tr><th scope="col">Run</th><th scope="col">Workflow</th><th scope="col">Status</th><th scope="col">Queued</th><th scope="col">Finished</th></tr>
            </thead>
            <tbody>
              {runs.map((r) => (
                <tr key={r.id} data-run={r.id}>
                  <td><Link to={`/ui/runs/${r.id}`}><code>{r.id.slice(0, 8)}</code></Link></td>
                  <td><Link to={`/ui/workflows/${r.workflow_id}?version=${r.version}`}>{r.workflow_name ?? r.workflow_id.slice(0, 8)}</Link> v{r.version}</td>
                  <td><StatusBadge status={r.status} /></td>
                  <td><When at={r.created_at} /></td>
                  <td><When at={r.finished_at} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && <button type="button" onClick={() => void load(next)}>Load more</button>}
    </section>
  );
}
