// Run view: the canvas with each node's live state (from GET /runs/{id}/stream), a timeline of
// log rows, cancel and retry. A reload replays the stream from the start, so it resumes live.
// A foreach shows how many items ended and lets you pick the item whose body steps the canvas
// shows; a workflow node (and each item of a foreach over a saved workflow) links to the child
// run it started (GET /runs?parent_run_id=); a child run links back to its parent.
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { Link, useParams } from "react-router";
import { api, unwrap, type LogRow, type Run, type RunSummary, type Workflow } from "../api/client";
import { follow } from "../api/sse";
import { Json } from "../components/Json";
import { NodePanel, type NodeIO } from "../components/NodePanel";
import { ErrorNote, StatusBadge, When } from "../components/Status";
import { Graph } from "../graph/Graph";
import { STATE_ICON, allNodes, asBlueprint, bodyOf, calledWorkflow, findNode, type Blueprint, type BlueprintEdge, type BlueprintNode, type NodeState } from "../graph/blueprint";
import { defaultItem, graphStates, latestByStep, loopProgress, progressText, type LoopProgress, type Phase } from "../graph/progress";
import { useTools } from "../tools";

const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const MAX_RESUMES = 20;
/** Pages of child runs read (200 each): a foreach takes at most FOREACH_MAX_ITEMS (1000). */
const MAX_CHILD_PAGES = 5;

interface Loop {
  stepId: string;
  progress: LoopProgress;
  /** The item whose body steps the canvas shows. */
  shown: number;
}

/** What the canvas shows of a run: each node's state and step id (a body's: for the item its
 * loop shows), each loop's items. */
interface RunPicture {
  states: Map<string, NodeState>;
  steps: Map<string, string>;
  loops: Map<string, Loop>;
  rows: Map<string, LogRow>;
}

function picture(run: Run, blueprint: Blueprint, logs: LogRow[], children: Map<string, RunSummary>, picked: Map<string, number>): RunPicture {
  const rows = latestByStep(logs);
  const result: RunPicture = { states: new Map(), steps: new Map(), loops: new Map(), rows };
  const context = {
    trigger_data: run.trigger_data,
    steps: Object.fromEntries(run.nodes.map((n) => [n.id, { output: n.output }])),
  };
  const visit = (nodes: BlueprintNode[], edges: BlueprintEdge[], prefix: string, phase: Phase, status: Map<string, string>) => {
    graphStates(nodes, edges, status, phase).forEach((state, id) => result.states.set(id, state));
    for (const node of nodes) {
      const stepId = `${prefix}${node.id}`;
      result.steps.set(node.id, stepId);
      if (node.type !== "foreach") continue;
      const progress = loopProgress(node, stepId, rows, children, context);
      if (!rows.has(stepId)) {
        // The loop's own row comes when it ends; until then its items say how it goes.
        const going = progress.items.map((i) => i.state);
        if (going.includes("waiting") && !going.some((s) => s === "running" || s === "retrying")) result.states.set(node.id, "waiting");
        else if (going.some((s) => s !== "pending")) result.states.set(node.id, "running");
      }
      const shown = Math.min(picked.get(node.id) ?? defaultItem(progress), Math.max(0, progress.items.length - 1));
      result.loops.set(node.id, { stepId, progress, shown });
      const body = bodyOf(node);
      if (!body) continue;
      const item = progress.items[shown]?.state ?? "pending";
      const itemPhase: Phase = item === "pending" ? "ended" : item === "succeeded" || item === "failed" ? "ended" : "running";
      const at = `${stepId}.${shown}.`;
      const bodyStatus = new Map<string, string>();
      for (const b of body.nodes) {
        const row = rows.get(`${at}${b.id}`);
        if (row) bodyStatus.set(b.id, row.status);
      }
      visit(body.nodes, body.edges, at, itemPhase, bodyStatus);
    }
  };
  const runPhase: Phase = run.status === "queued" ? "queued" : run.status === "running" ? "running" : "ended";
  visit(blueprint.nodes, blueprint.edges, "", runPhase, new Map(run.nodes.map((n) => [n.id, n.status])));
  return result;
}

export default function RunView() {
  const { id = "" } = useParams();
  const [run, setRun] = useState<Run>();
  const [workflow, setWorkflow] = useState<Workflow>();
  const [logs, setLogs] = useState<LogRow[]>([]);
  const [children, setChildren] = useState(new Map<string, RunSummary>());
  const [picked, setPicked] = useState(new Map<string, number>());
  const [error, setError] = useState<unknown>();
  const [link, setLink] = useState<"live" | "reconnecting" | "lost" | "ended">("reconnecting");
  const [selected, setSelected] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [generation, setGeneration] = useState(0); // bump to (re)open the stream
  const lastId = useRef(0);
  const refresh = useRef<number | undefined>(undefined);
  const resumes = useRef(0);
  const callsWorkflows = useRef(false); // the blueprint has nodes that start child runs
  const shownId = useRef(id); // answers about a run no longer shown (a link was followed) are dropped
  shownId.current = id;
  const tools = useTools();

  const loadChildren = useCallback(async () => {
    const found = new Map<string, RunSummary>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_CHILD_PAGES; page++) {
      const query = { parent_run_id: id, limit: 200, cursor };
      const answer = unwrap(await api.GET("/runs", { params: { query } }));
      for (const child of answer.runs) if (child.parent_step_id) found.set(child.parent_step_id, child);
      if (!answer.next_cursor) break;
      cursor = answer.next_cursor;
    }
    if (shownId.current === id) setChildren(found);
  }, [id]);

  const reload = useCallback(async () => {
    const fresh = unwrap(await api.GET("/runs/{run_id}", { params: { path: { run_id: id } } }));
    if (shownId.current !== id) return fresh;
    setRun(fresh);
    if (callsWorkflows.current) await loadChildren();
    return fresh;
  }, [id, loadChildren]);

  useEffect(() => {
    setRun(undefined);
    setWorkflow(undefined);
    setError(undefined);
    setLogs([]);
    setChildren(new Map());
    setPicked(new Map());
    setSelected(null);
    callsWorkflows.current = false;
    lastId.current = 0;
    resumes.current = 0;
    reload().then(
      (fresh) =>
        api
          .GET("/workflows/{workflow_id}", { params: { path: { workflow_id: fresh.workflow_id }, query: { version: fresh.version } } })
          .then((r) => {
            const loaded = unwrap(r);
            if (shownId.current !== id) return;
            setWorkflow(loaded);
            callsWorkflows.current = allNodes(asBlueprint(loaded.blueprint)).some(({ node }) => calledWorkflow(node));
            if (callsWorkflows.current) return loadChildren();
          }),
    ).catch(setError);
  }, [id, reload, loadChildren]);

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
              r ? { ...r, nodes: r.nodes.map((n) => (n.id === row.step_id ? { ...n, status: row.status, attempt: row.attempt } : n)) } : r,
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
  const view = useMemo(
    () => (run && blueprint ? picture(run, blueprint, logs, children, picked) : null),
    [run, blueprint, logs, children, picked],
  );
  const pick = useCallback((loop: string, index: number) => setPicked((old) => new Map(old).set(loop, index)), []);
  const extras = useMemo(() => {
    const shown = new Map<string, ReactNode>();
    if (!blueprint || !view) return shown;
    for (const { node } of allNodes(blueprint)) {
      const loop = view.loops.get(node.id);
      if (loop) shown.set(node.id, <LoopHead node={node} loop={loop} onPick={(i) => pick(node.id, i)} />);
      const child = node.type === "workflow" ? children.get(view.steps.get(node.id) ?? node.id) : undefined;
      if (child) shown.set(node.id, <ChildLink child={child} short />);
    }
    return shown;
  }, [blueprint, view, children, pick]);

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
  const node = blueprint ? findNode(blueprint, selected) : undefined;
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
      {run.parent_run_id && (
        <p data-testid="parent-run">
          Started by <Link to={`/ui/runs/${run.parent_run_id}`}>run {run.parent_run_id.slice(0, 8)}</Link>
          {run.parent_step_id && <> at step <code>{run.parent_step_id}</code></>}
        </p>
      )}
      <div className="toolbar" role="toolbar" aria-label="Run actions">
        <button type="button" onClick={() => void act("cancel")} disabled={busy || finished}>Cancel run</button>
        <button type="button" onClick={() => void act("retry")} disabled={busy || run.status !== "failed"}>Retry from failed step</button>
      </div>
      <ErrorNote error={error} />
      {run.error && (
        <div className="error" role="alert"><strong>Run failed:</strong> <Json value={run.error} label="Run error" /></div>
      )}
      {blueprint && view && (
        <div className="canvas-layout">
          <Graph blueprint={blueprint} states={view.states} extras={extras} selected={selected} onSelect={setSelected} label="Run canvas with node states" />
          {node && (
            <NodePanel node={node} tools={tools} onClose={() => setSelected(null)} io={nodeIO(run, view, node)}>
              {view.loops.has(node.id) && (
                <LoopItems node={node} loop={view.loops.get(node.id)!} rows={view.rows} onPick={(i) => pick(node.id, i)} />
              )}
              {node.type === "workflow" && <ChildSection child={children.get(view.steps.get(node.id) ?? node.id)} />}
            </NodePanel>
          )}
        </div>
      )}
      <h2>Timeline</h2>
      {logs.length === 0 && <p className="muted">No steps yet.</p>}
      <ol className="timeline" aria-label="Log rows" data-testid="timeline">
        {logs.map((row) => (
          <li key={row.id} data-node={row.node_id} data-step={row.step_id} data-status={row.status}>
            <details>
              <summary>
                <StatusBadge status={row.status} /> <strong>{row.step_id}</strong>
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

/** What the panel shows of a node in this run: a top node's state, a body node's step for the
 * item its loop shows. */
function nodeIO(run: Run, view: RunPicture, node: BlueprintNode): NodeIO | undefined {
  const state = view.states.get(node.id);
  const top = run.nodes.find((n) => n.id === node.id);
  if (top) return { status: state ?? top.status, attempt: top.attempt, input: top.input, output: top.output, error: top.error, duration_ms: top.duration_ms };
  const row = view.rows.get(view.steps.get(node.id) ?? "");
  if (!row) return state ? { status: state } : undefined;
  return { status: state ?? row.status, attempt: row.attempt, input: row.input, output: row.output, error: row.error, duration_ms: row.duration_ms };
}

/** On a loop's card: "2/3 items, 1 failed", and (with a body) which item its body shows. */
function LoopHead({ node, loop, onPick }: { node: BlueprintNode; loop: Loop; onPick: (index: number) => void }) {
  const { progress, shown } = loop;
  return (
    <div className="loop-head">
      <span className="loop-progress" data-testid="loop-progress">{progressText(progress)}</span>
      {bodyOf(node) && progress.items.length > 0 && (
        <label className="loop-item nopan nowheel">
          item{" "}
          <select value={shown} onChange={(e) => onPick(Number(e.target.value))} aria-label={`Item shown in ${node.name || node.id}`}>
            {progress.items.map((item) => (
              <option key={item.index} value={item.index}>
                {item.index + 1} {STATE_ICON[item.state]}
              </option>
            ))}
          </select>
          {progress.total !== null && <> of {progress.total}</>}
        </label>
      )}
    </div>
  );
}

/** In the panel of a loop: every item, its state and its steps' (or its child run), each
 * one click from being shown on the canvas. */
function LoopItems({ node, loop, rows, onPick }: { node: BlueprintNode; loop: Loop; rows: Map<string, LogRow>; onPick: (index: number) => void }) {
  const body = bodyOf(node);
  const { progress, stepId, shown } = loop;
  return (
    <section>
      <h3>Items <span className="muted small">({progressText(progress)})</span></h3>
      {progress.items.length === 0 ? (
        <p className="muted">No item has started.</p>
      ) : (
        <table className="fields loop-items" data-testid="loop-items">
          <thead>
            <tr><th scope="col">Item</th><th scope="col">State</th><th scope="col">{body ? "Steps" : "Run"}</th></tr>
          </thead>
          <tbody>
            {progress.items.map((item) => (
              <tr key={item.index} data-item={item.index} aria-current={body && item.index === shown ? "true" : undefined}>
                <th scope="row">
                  {body ? (
                    <button type="button" className="link" onClick={() => onPick(item.index)} aria-pressed={item.index === shown}>
                      {item.index + 1}
                    </button>
                  ) : (
                    item.index + 1
                  )}
                </th>
                <td><StatusBadge status={item.state} /></td>
                <td>
                  {body
                    ? body.nodes.map((b) => {
                        const row = rows.get(`${stepId}.${item.index}.${b.id}`);
                        return (
                          <span key={b.id} className="step-chip" title={`${b.name || b.id}: ${row?.status ?? "pending"}`}>
                            {b.name || b.id} <StatusBadge status={row?.status ?? "pending"} />{" "}
                          </span>
                        );
                      })
                    : item.child && <ChildLink child={item.child} />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** A link to a child run with its status (``short``: on a card, without its id). */
function ChildLink({ child, short = false }: { child: RunSummary; short?: boolean }) {
  return (
    <Link to={`/ui/runs/${child.id}`} className="nodrag child-run" data-testid="child-run-link">
      child run{short ? "" : ` ${child.id.slice(0, 8)}`} <StatusBadge status={child.status} />
    </Link>
  );
}

/** In the panel of a workflow node: the run it started, and the workflow that is. */
function ChildSection({ child }: { child?: RunSummary }) {
  return (
    <section>
      <h3>Child run</h3>
      {child ? (
        <p>
          <ChildLink child={child} /> of <Link to={`/ui/workflows/${child.workflow_id}?version=${child.version}`}>{child.workflow_name}</Link>{" "}
          v{child.version}
        </p>
      ) : (
        <p className="muted">Not started yet.</p>
      )}
    </section>
  );
}
