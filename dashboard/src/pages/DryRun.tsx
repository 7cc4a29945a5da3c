// Dry run: a payload in, each node's resolved input and output on the canvas (tools sandboxed,
// nothing stored).
import { useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { api, unwrap, type DryRun, type Workflow } from "../api/client";
import { NodePanel } from "../components/NodePanel";
import { ErrorNote, StatusBadge } from "../components/Status";
import { Graph } from "../graph/Graph";
import { asBlueprint, findNode, type NodeState } from "../graph/blueprint";
import { useTools } from "../tools";

export default function DryRunPage() {
  const { id = "" } = useParams();
  const [search] = useSearchParams();
  const version = search.get("version") ? Number(search.get("version")) : undefined;
  const [workflow, setWorkflow] = useState<Workflow>();
  const [payload, setPayload] = useState("{}");
  const [result, setResult] = useState<DryRun>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<string | null>(null);
  const tools = useTools();

  useEffect(() => {
    api.GET("/workflows/{workflow_id}", { params: { path: { workflow_id: id }, query: version ? { version } : {} } })
      .then((r) => setWorkflow(unwrap(r)), setError);
  }, [id, version]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(payload);
    } catch (parseError) {
      setError(`The payload is not JSON: ${String(parseError)}`);
      return;
    }
    setBusy(true);
    try {
      setResult(unwrap(await api.POST("/workflows/{workflow_id}/dry-run", { params: { path: { workflow_id: id } }, body: { payload: data, version } })));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const blueprint = useMemo(() => (workflow ? asBlueprint(workflow.blueprint) : null), [workflow]);
  const states = useMemo(
    () => new Map((result?.nodes ?? []).map((n) => [n.id, n.status as NodeState])),
    [result],
  );
  if (!workflow || !blueprint) return error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>;
  const node = findNode(blueprint, selected);
  const io = result?.nodes.find((n) => n.id === selected);

  return (
    <section>
      <h1>Dry run: <Link to={`/ui/workflows/${id}?version=${workflow.version}`}>{workflow.name}</Link> <span className="muted small">v{workflow.version}</span></h1>
      <form onSubmit={submit} aria-label="Dry run">
        <label>
          Trigger payload (JSON)
          <textarea className="code" rows={6} value={payload} onChange={(e) => setPayload(e.target.value)} spellCheck={false} />
        </label>
        <button type="submit" disabled={busy}>{busy ? "Running…" : "Dry run"}</button>
        <span className="muted small"> Every tool runs sandboxed; delays and waits are skipped; nothing is stored.</span>
      </form>
      <ErrorNote error={error} />
      {result && (
        <p role="status" data-testid="dry-run-result">
          Result: <StatusBadge status={result.status} />
          {result.sandbox && <span className="muted small"> (sandbox)</span>}
          {result.error && <span className="error"> {JSON.stringify(result.error)}</span>}
        </p>
      )}
      <div className="canvas-layout">
        <Graph blueprint={blueprint} states={result ? states : undefined} selected={selected} onSelect={setSelected} label="Dry run canvas" />
        {node && <NodePanel node={node} tools={tools} io={io ? { status: io.status, input: io.input, output: io.output, error: io.error } : undefined} onClose={() => setSelected(null)} />}
      </div>
      {result && (
        <div className="table-wrap">
          <table className="list">
            <caption>Each node</caption>
            <thead><tr><th scope="col">Node</th><th scope="col">Status</th><th scope="col">Input → output</th></tr></thead>
            <tbody>
              {result.nodes.map((n) => (
                <tr key={n.id}>
                  <td><button type="button" className="link" onClick={() => setSelected(n.id)}>{n.name || n.id}</button></td>
                  <td><StatusBadge status={n.status} /></td>
                  <td className="small"><code>{short(n.input)}</code> → <code>{short(n.error ?? n.output)}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function short(value: unknown): string {
  if (value === null || value === undefined) return "—";
  const text = JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}
