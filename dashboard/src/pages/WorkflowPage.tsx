// Canvas: the workflow drawn from its positions; select a node for its params and task fields;
// drag and save positions (a new version); activate / deactivate; revise by instruction;
// version history with a diff of nodes; the connections it names, missing ones marked; a
// webhook trigger's own URL (HookPanel).
import { useCallback, useEffect, useMemo, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { api, ApiFailure, unwrap, type Workflow } from "../api/client";
import { HookPanel } from "../components/HookPanel";
import { NeededConnections } from "../components/NeededConnections";
import { NodePanel, type Problem } from "../components/NodePanel";
import { ErrorNote, When } from "../components/Status";
import { Graph } from "../graph/Graph";
import { allNodes, asBlueprint, diffNodes, findNode, warningsByNode, withPositions, type Blueprint } from "../graph/blueprint";
import { nodeIcon } from "../graph/kinds";
import { withParam } from "../params";
import { useTools } from "../tools";

export default function WorkflowPage() {
  const { id = "" } = useParams();
  const [search, setSearch] = useSearchParams();
  const version = search.get("version");
  const [workflow, setWorkflow] = useState<Workflow>();
  const [error, setError] = useState<unknown>();
  const [selected, setSelected] = useState<string | null>(null);
  const [moved, setMoved] = useState<Map<string, { x: number; y: number }> | null>(null);
  const [problems, setProblems] = useState<Problem[]>([]);
  const [warnings, setWarnings] = useState<string[]>([]);
  const [busy, setBusy] = useState<string | null>(null);
  const [instruction, setInstruction] = useState("");
  const [notice, setNotice] = useState<string | null>(null);
  /** `hook.path` (with its token) from a save or activation here that made the hook. */
  const [madePath, setMadePath] = useState<string | null>(null);
  const tools = useTools();
  const navigate = useNavigate();

  const load = useCallback(async () => {
    try {
      const query = version ? { version: Number(version) } : {};
      setWorkflow(unwrap(await api.GET("/workflows/{workflow_id}", { params: { path: { workflow_id: id }, query } })));
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  }, [id, version]);
  useEffect(() => {
    void load();
    setMoved(null);
  }, [load]);
  useEffect(() => setMadePath(null), [id]);

  const blueprint = useMemo(() => (workflow ? asBlueprint(workflow.blueprint) : null), [workflow]);
  const notes = useMemo(() => {
    const map = blueprint ? warningsByNode(blueprint, warnings) : new Map<string, string[]>();
    for (const p of problems) {
      if (p.node_id) map.set(p.node_id, [...(map.get(p.node_id) ?? []), `${(p.loc ?? []).join(".")}: ${p.message}`]);
    }
    for (const need of workflow?.credentials ?? []) {
      if (need.present) continue;
      for (const id of need.nodes) map.set(id, [...(map.get(id) ?? []), `connection '${need.name}' is missing`]);
    }
    return map;
  }, [blueprint, warnings, problems, workflow]);

  const act = async (label: string, action: () => Promise<void>) => {
    setBusy(label);
    setError(undefined);
    setNotice(null);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(null);
    }
  };

  const showVersion = (v: number) => {
    setSearch(withParam(search, "version", String(v)));
  };

  const savePositions = () =>
    act("save", async () => {
      if (!blueprint || !moved) return;
      const result = await api.PUT("/workflows/{workflow_id}", {
        params: { path: { workflow_id: id } },
        body: { blueprint: withPositions(blueprint, moved) as unknown as Record<string, unknown> },
      });
      if (result.response.status === 422) {
        const details = (result.error as { error?: { details?: Problem[] } })?.error?.details;
        setProblems(Array.isArray(details) ? details : []);
      }
      const saved = unwrap(result);
      if (saved.hook?.path) setMadePath(saved.hook.path);
      setProblems([]);
      setMoved(null);
      setNotice(`Saved as version ${saved.version}.`);
      showVersion(saved.version);
    });

  const toggle = () =>
    act("activate", async () => {
      if (!workflow) return;
      const path = { params: { path: { workflow_id: id } } };
      const result = workflow.active
        ? await api.POST("/workflows/{workflow_id}/deactivate", path)
        : await api.POST("/workflows/{workflow_id}/activate", { ...path, body: { version: workflow.version } });
      const updated = unwrap(result);
      if (updated.hook?.path) setMadePath(updated.hook.path);
      setWorkflow((w) => (w ? { ...w, active: updated.active, active_version: updated.active_version, hook: updated.hook } : w));
    });

  const runNow = () =>
    act("run", async () => {
      const started = unwrap(await api.POST("/workflow/execute", { body: { workflow_id: id, version: workflow?.version, payload: {} } }));
      navigate(`/ui/runs/${started.run_id}`);
    });

  const archive = () =>
    act("archive", async () => {
      if (!window.confirm(`Archive "${workflow?.name}"? It stops running and leaves the list; its runs stay readable.`)) return;
      const result = await api.DELETE("/workflows/{workflow_id}", { params: { path: { workflow_id: id } } });
      if (!result.response.ok) unwrap(result); // 409 workflow_busy: runs still going
      navigate("/ui/workflows");
    });

  const revise = (e: FormEvent) => {
    e.preventDefault();
    void act("revise", async () => {
      const draft = unwrap(await api.POST("/workflows/{workflow_id}/revise", { params: { path: { workflow_id: id } }, body: { instruction } }));
      setWarnings(draft.warnings);
      if (draft.hook?.path) setMadePath(draft.hook.path);
      setInstruction("");
      setNotice(`Revised: version ${draft.version}.`);
      showVersion(draft.version);
    });
  };

  if (error && !workflow) return <ErrorNote error={error} />;
  if (!workflow || !blueprint) return <p className="muted">Loading…</p>;
  const node = findNode(blueprint, selected);
  const live = workflow.active && workflow.active_version === workflow.version;

  return (
    <section>
      <div className="row wrap">
        <h1 className="grow">
          {workflow.name}{" "}
          {workflow.active ? (
            <span className="badge state-succeeded" data-testid="active-state">● active v{workflow.active_version}</span>
          ) : (
            <span className="badge" data-testid="active-state">○ inactive</span>
          )}
        </h1>
        <label>
          Version{" "}
          <select value={workflow.version} onChange={(e) => showVersion(Number(e.target.value))}>
            {[...workflow.versions].reverse().map((v) => (
              <option key={v.version} value={v.version}>v{v.version}{v.version === workflow.active_version ? " (live)" : ""}</option>
            ))}
          </select>
        </label>
      </div>
      {workflow.description && <p className="muted">{workflow.description}</p>}
      <div className="toolbar" role="toolbar" aria-label="Workflow actions">
        <button type="button" onClick={() => void savePositions()} disabled={!moved || busy !== null}>
          {busy === "save" ? "Saving…" : "Save positions"}
        </button>
        <button type="button" onClick={() => void toggle()} disabled={busy !== null}>
          {workflow.active ? "Deactivate" : `Activate v${workflow.version}`}
        </button>
        <button type="button" onClick={() => void runNow()} disabled={busy !== null}>Run now</button>
        <Link className="button" to={`/ui/workflows/${id}/dry-run?version=${workflow.version}`}>Dry run</Link>
        <Link className="button" to={`/ui/workflows/${id}/runs`}>Runs</Link>
        {workflow.archived_at ? (
          <span className="badge">archived</span>
        ) : (
          <button type="button" onClick={() => void archive()} disabled={busy !== null}>Archive</button>
        )}
        {moved && <span className="muted small">Unsaved layout changes</span>}
        {workflow.active && !live && <span className="muted small">v{workflow.active_version} is live, not this one</span>}
      </div>
      {notice && <p className="notice" role="status">{notice}</p>}
      <ErrorNote error={error instanceof ApiFailure && problems.length ? `${error.message}` : error} />
      {problems.length > 0 && (
        <ul className="errors" aria-label="Validation errors">
          {problems.map((p, i) => (<li key={i}><code>{p.node_id ?? ""} {(p.loc ?? []).join(".")}</code> {p.message}</li>))}
        </ul>
      )}
      <NeededConnections needs={workflow.credentials ?? []} onSelect={setSelected} />
      <HookPanel key={id} workflow={workflow} blueprint={blueprint} madePath={madePath} />
      {warnings.length > 0 && (
        <ul className="warnings" aria-label="Warnings">
          {warnings.map((w) => (<li key={w} className="warning"><span aria-hidden="true">⚠ </span>{w}</li>))}
        </ul>
      )}
      <div className="canvas-layout">
        <Graph blueprint={blueprint} notes={notes} selected={selected} onSelect={setSelected} onMove={setMoved} label={`Canvas of ${workflow.name}`} />
        {node && (
          <NodePanel node={node} tools={tools} credentials={workflow.credentials} notes={warningsByNode(blueprint, warnings).get(node.id)}
            problems={problems.filter((p) => p.node_id === node.id)} onClose={() => setSelected(null)} />
        )}
      </div>
      <details className="nodes-list">
        <summary>Nodes ({allNodes(blueprint).length})</summary>
        <ul>
          {allNodes(blueprint).map(({ node: n, parent }) => (
            <li key={n.id} className={parent ? "in-body" : undefined}>
              <button type="button" className="link" onClick={() => setSelected(n.id)} aria-pressed={selected === n.id}>
                <span aria-hidden="true">{nodeIcon(n)} </span>{n.name || n.id} <span className="muted">({n.type}{parent ? `, in ${parent}` : ""})</span>
              </button>
            </li>
          ))}
        </ul>
      </details>
      <form className="row" aria-label="Revision" onSubmit={revise}>
        <label className="grow">
          Revise by instruction
          <input value={instruction} onChange={(e) => setInstruction(e.target.value)} placeholder="add a reminder two days later" />
        </label>
        <button type="submit" disabled={busy !== null || !instruction.trim()}>{busy === "revise" ? "Revising…" : "Revise"}</button>
      </form>
      <History workflow={workflow} onShow={showVersion} />
    </section>
  );
}

function History({ workflow, onShow }: { workflow: Workflow; onShow: (v: number) => void }) {
  const [pair, setPair] = useState<[number, number] | null>(null);
  const [diff, setDiff] = useState<ReturnType<typeof diffNodes> | null>(null);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    if (!pair) return;
    const fetchVersion = async (v: number): Promise<Blueprint> =>
      asBlueprint(unwrap(await api.GET("/workflows/{workflow_id}", { params: { path: { workflow_id: workflow.id }, query: { version: v } } })).blueprint);
    Promise.all([fetchVersion(pair[0]), fetchVersion(pair[1])]).then(
      ([a, b]) => setDiff(diffNodes(a, b)),
      setError,
    );
  }, [pair, workflow.id]);
  return (
    <details className="history">
      <summary>Version history ({workflow.versions.length})</summary>
      <ol reversed>
        {[...workflow.versions].reverse().map((v) => (
          <li key={v.version}>
            <button type="button" className="link" onClick={() => onShow(v.version)}>v{v.version}</button>{" "}
            <When at={v.created_at} /> · {v.trigger_kind}{v.trigger_event ? ` ${v.trigger_event}` : ""}
            {v.version === workflow.active_version && <strong> (live)</strong>}
            {v.version > 1 && (
              <button type="button" className="link" onClick={() => setPair([v.version - 1, v.version])}>
                changes from v{v.version - 1}
              </button>
            )}
          </li>
        ))}
      </ol>
      <ErrorNote error={error} />
      {pair && diff && (
        <div className="diff" aria-live="polite" data-testid="version-diff">
          <h3>v{pair[0]} → v{pair[1]}</h3>
          <DiffLine label="Added" sign="+" ids={diff.added} />
          <DiffLine label="Removed" sign="-" ids={diff.removed} />
          <DiffLine label="Changed" sign="~" ids={diff.changed} />
          <DiffLine label="Moved" sign="↔" ids={diff.moved} />
          <DiffLine label="Edges added" sign="+" ids={diff.edgesAdded} />
          <DiffLine label="Edges removed" sign="-" ids={diff.edgesRemoved} />
        </div>
      )}
    </details>
  );
}

function DiffLine({ label, sign, ids }: { label: string; sign: string; ids: string[] }) {
  if (ids.length === 0) return null;
  return (
    <p>
      <strong>{label}:</strong> {ids.map((i) => <code key={i} className="diff-item">{sign} {i}</code>)}
    </p>
  );
}
