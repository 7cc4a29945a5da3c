// Run view: the canvas with each node's live state (from GET /runs/{id}/stream), a timeline of
// log rows, cancel and retry. A reload replays the stream from the start, so it resumes live.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useParams } from "react-router";
import { api, unwrap, type LogRow, type Run, type Workflow } from "../api/client";
import { follow } from "../api/sse";
import { Json } from "../components/Json";
import { NodePanel } from "../components/NodePanel";
import { ErrorNote, StatusBadge, When } from "../components/Status";
import { Graph } from "../graph/Graph";
import { asBlueprint, type Blueprint, type NodeState } from "../graph/blueprint";
import { useTools } from "../tools";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const MAX_RESUMES = 20;

/** Each node's state: the run's, plus queued (run not started) and running (next up). */
function nodeStates(run: Run, blueprint: Blueprint): Map<string, NodeState> {
  const status = new Map<string, string>(run.nodes.map((n) => [n.id, n.status]));
  const states = new Map<string, NodeState>();
  for (const node of run.nodes) {
    let state = node.status as NodeState;
    if (node.status === "pending") {
      const sources = blueprint.edges.filter((e) => e.target === node.id).map((e) => status.get(e.source));
      const ready =
        node.type === "trigger" ? true : sources.some((s) => s === "succeeded") && !sources.some((s) => s === "pending");
      if (run.status === "queued") state = "queued";
      else if (run.status === "running" && ready) state = "running";
    }
    states.set(node.id, state);
  }
  return states;
}

export default function RunView() {
  const { id = "" } = useParams();
  const [run, setRun] = useState<Run>();
  const [workflow, setWorkflow] = useState<Workflow>();
  const [logs, setLogs] = useState<LogRow[]>([]);
  const [error, setError] = useState<unknown>();
  const [link, setLink] = useState<"live" | "reconnecting" | "lost" | "ended">("reconnecting");
  const [selected, setSelected] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [generation, setGeneration] = useState(0); // bump to (re)open the stream
  const lastId = useRef(0);
  const refresh = useRef<number | undefined>(undefined);
  const resumes = useRef(0);
  const tools = useTools();

  const reload = useCallback(async () => {
    const fresh = unwrap(await api.GET("/runs/{run_id}", { params: { path: { run_id: id } } }));
    setRun(fresh);
    return fresh;
  }, [id]);

  useEffect(() => {
    setLogs([]);
    lastId.current = 0;
    reload().then(
      (fresh) =>
        api
          .GET("/workflows/{workflow_id}", { params: { path: { workflow_id: fresh.workflow_id }, query: { version: fresh.version } } })
          .then((r) => setWorkflow(unwrap(r))),
    ).catch(setError);
  }, [id, reload]);

  useEffect(() => {
    const controller = new AbortController();
    const scheduleReload = () => {
      window.clearTimeout(refresh.current);
      refresh.current = window.setTimeout(() => void reload().catch(setError), 150);
    };
    follow(
      `/runs/${id}/stream?last_id=${lastId.current}`,
      {
        onEvent(event, data) {
          if (event === "log") {
            const row = data as LogRow;
            if (row.id <= lastId.current) return;
            lastId.current = row.id;
            setLogs((old) => [...old, row]);
            setRun((r) =>
              r ? { ...r, nodes: r.nodes.map((n) => (n.id === row.node_id ? { ...n, status: row.status, attempt: row.attempt } : n)) } : r,
            );
          } else if (event === "run") {
            const update = data as Partial<Run>;
            setRun((r) => (r ? { ...r, ...update, nodes: r.nodes } : r));
          }
          scheduleReload();
        },
        onState: setLink,
        onEnd() {
          setLink("ended");
          void reload().then((fresh) => {
            if (!FINISHED.has(fresh.status) && resumes.current < MAX_RESUMES && !controller.signal.aborted) {
              resumes.current += 1;
              setGeneration((g) => g + 1); // cut off while the run goes on: resume from lastId
            }
          });
        },
      },
      controller.signal,
    );
    return () => {
      controller.abort();
      window.clearTimeout(refresh.current);
    };
  }, [id, generation, reload]);

  const blueprint = useMemo(() => (workflow ? asBlueprint(workflow.blueprint) : null), [workflow]);
  const states = useMemo(() => (run && blueprint ? nodeStates(run, blueprint) : undefined), [run, blueprint]);

  const act = async (what: "cancel" | "retry") => {
    setBusy(true);
    setError(undefined);
    try {
      const path = { params: { path: { run_id: id } } };
      const updated = unwrap(what === "cancel" ? await api.POST("/runs/{run_id}/cancel", path) : await api.POST("/runs/{run_id}/retry", path));
      setRun(updated);
      if (what === "retry") {
        resumes.current = 0;
        setGeneration((g) => g + 1);
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  if (!run) return error ? <ErrorNote error={error} /> : <p className="muted">Loading…</p>;
  const node = blueprint?.nodes.find((n) => n.id === selected);
  const io = run.nodes.find((n) => n.id === selected);
  const finished = FINISHED.has(run.status);

  return (
    <section>
      <div className="row wrap">
        <h1 className="grow">
          Run <code className="small">{run.id.slice(0, 8)}</code>{" "}
          <span data-testid="run-status" aria-live="polite"><StatusBadge status={run.status} /></span>
        </h1>
        <span className="muted small" data-testid="stream-state">
          {link === "live" ? "● live" : link === "ended" ? "stream ended" : link === "lost" ? "connection lost — reload to retry" : "connecting…"}
        </span>
      </div>
      <p className="muted">
        {workflow ? <Link to={`/ui/workflows/${workflow.id}?version=${run.version}`}>{workflow.name}</Link> : "…"} v{run.version} · queued <When at={run.created_at} />
        {run.finished_at && <> · finished <When at={run.finished_at} /></>}
        {run.wake_at && <> · wakes <When at={run.wake_at} /></>}
      </p>
      <div className="toolbar" role="toolbar" aria-label="Run actions">
        <button type="button" onClick={() => void act("cancel")} disabled={busy || finished}>Cancel run</button>
        <button type="button" onClick={() => void act("retry")} disabled={busy || run.status !== "failed"}>Retry from failed step</button>
      </div>
      <ErrorNote error={error} />
      {run.error && (
        <div className="error" role="alert"><strong>Run failed:</strong> <Json value={run.error} label="Run error" /></div>
      )}
      {blueprint && (
        <div className="canvas-layout">
          <Graph blueprint={blueprint} states={states} selected={selected} onSelect={setSelected} label="Run canvas with node states" />
          {node && (
            <NodePanel node={node} tools={tools} onClose={() => setSelected(null)}
              io={io ? { status: states?.get(io.id) ?? io.status, attempt: io.attempt, input: io.input, output: io.output, error: io.error, duration_ms: io.duration_ms } : undefined} />
          )}
        </div>
      )}
      <h2>Timeline</h2>
      {logs.length === 0 && <p className="muted">No steps yet.</p>}
      <ol className="timeline" aria-label="Log rows" data-testid="timeline">
        {logs.map((row) => (
          <li key={row.id} data-node={row.node_id} data-status={row.status}>
            <details>
              <summary>
                <StatusBadge status={row.status} /> <strong>{row.node_id}</strong>
                <span className="muted small"> attempt {row.attempt} · {Math.round(row.duration_ms)} ms · <When at={row.finished_at} /></span>
              </summary>
              {row.input != null && <><h4>Input</h4><Json value={row.input} label="Input" /></>}
              {row.output != null && <><h4>Output</h4><Json value={row.output} label="Output" /></>}
              {row.error != null && <><h4>Error</h4><Json value={row.error} label="Error" /></>}
            </details>
          </li>
        ))}
      </ol>
      {run.output != null && (<><h2>Output</h2><Json value={run.output} label="Run output" /></>)}
    </section>
  );
}
