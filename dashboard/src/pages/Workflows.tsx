// Workflows: search, active filter, last run; new from a prompt.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { Link, useLocation, useNavigate, useSearchParams } from "react-router";
import { api, unwrap, type WorkflowSummary } from "../api/client";
import { ErrorNote, StatusBadge, When } from "../components/Status";
import { withParam } from "../params";

export function Workflows() {
  const [params, setParams] = useSearchParams();
  const q = params.get("q") ?? "";
  const active = params.get("active") ?? "";
  const [rows, setRows] = useState<WorkflowSummary[]>();
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>();
  const [search, setSearch] = useState(q);
  const [prompt, setPrompt] = useState("");
  const navigate = useNavigate();
  const { key } = useLocation(); // a click on "Workflows" reloads the list

  const latest = useRef(0); // answers to an older filter arrive late: drop them

  const load = async (cursor?: string) => {
    const ticket = ++latest.current;
    const query = {
      limit: 50,
      q: q || undefined,
      active: active ? active === "true" : undefined,
      cursor,
    };
    try {
      const page = unwrap(await api.GET("/workflows", { params: { query } }));
      if (ticket !== latest.current) return;
      setRows((old) => (cursor ? [...(old ?? []), ...page.workflows] : page.workflows));
      setNext(page.next_cursor ?? null);
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void load();
  }, [q, active, key]); // load reads only these

  const filter = (e: FormEvent) => {
    e.preventDefault();
    setParams(withParam(params, "q", search));
  };

  return (
    <section>
      <h1>Workflows</h1>
      <form
        className="row prompt"
        aria-label="New workflow from a prompt"
        onSubmit={(e) => {
          e.preventDefault();
          navigate("/ui/new", { state: { prompt } });
        }}
      >
        <label className="grow">
          <span className="sr-only">Describe a new workflow</span>
          <input value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="When a payment is captured, WhatsApp the customer a receipt" />
        </label>
        <button type="submit" disabled={!prompt.trim()}>Draft it</button>
      </form>
      <form className="row" role="search" onSubmit={filter}>
        <label className="grow">
          <span className="sr-only">Search workflows</span>
          <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="Search by name or description" />
        </label>
        <label>
          <span className="sr-only">Show</span>
          <select
            value={active}
            onChange={(e) => setParams(withParam(params, "active", e.target.value))}
          >
            <option value="">All</option>
            <option value="true">Active</option>
            <option value="false">Inactive</option>
          </select>
        </label>
        <button type="submit">Search</button>
      </form>
      <ErrorNote error={error} />
      {rows && rows.length === 0 && <p className="muted">No workflows yet: describe one above.</p>}
      {rows && rows.length > 0 && (
        <div className="table-wrap">
          <table className="list">
            <thead>
              <tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Version</th><th scope="col">Last run</th><th scope="col">Updated</th></tr>
            </thead>
            <tbody>
              {rows.map((w) => (
                <tr key={w.id}>
                  <td>
                    <Link to={`/ui/workflows/${w.id}`}>{w.name}</Link>
                    {w.description && <div className="muted small">{w.description}</div>}
                  </td>
                  <td>{w.active ? <span className="badge state-succeeded">● active</span> : <span className="badge">○ inactive</span>}</td>
                  <td>v{w.latest_version}{w.active_version ? ` (live v${w.active_version})` : ""}</td>
                  <td>
                    {w.last_run ? (
                      <Link to={`/ui/runs/${w.last_run.id}`}>
                        <StatusBadge status={w.last_run.status} /> <When at={w.last_run.created_at} />
                      </Link>
                    ) : (
                      <span className="muted">never</span>
                    )}
                  </td>
                  <td><When at={w.updated_at} /></td>
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
