// Draft: a sentence in, the drafted graph out, with the architect's warnings on their nodes.
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Link, useLocation } from "react-router";
import { api, ApiFailure, unwrap, type Draft } from "../api/client";
import { ErrorNote } from "../components/Status";
import { NodePanel, type Problem } from "../components/NodePanel";
import { Graph } from "../graph/Graph";
import { asBlueprint, findNode, warningsByNode, type Blueprint } from "../graph/blueprint";

/** A draft the model could not make valid: its last try and what is wrong with it. */
interface Invalid {
  blueprint: Blueprint | null;
  errors: Problem[];
}

function invalidDraft(error: unknown): Invalid | null {
  if (!(error instanceof ApiFailure) || error.error.code !== "draft_invalid") return null;
  const details = error.error.details as { errors?: Problem[]; last_draft?: unknown } | undefined;
  const last = details?.last_draft ? asBlueprint(details.last_draft) : null;
  return { blueprint: last && last.nodes.length ? last : null, errors: details?.errors ?? [] };
}
import { useTools } from "../tools";

export default function DraftPage() {
  const location = useLocation();
  const handed = (location.state as { prompt?: string } | null)?.prompt ?? "";
  const [prompt, setPrompt] = useState(handed);
  const [draft, setDraft] = useState<Draft>();
  const [error, setError] = useState<unknown>();
  const [invalid, setInvalid] = useState<Invalid | null>(null);
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<string | null>(null);
  const tools = useTools();
  const started = useRef(false);

  const submit = async (text: string) => {
    setBusy(true);
    setError(undefined);
    setInvalid(null);
    setSelected(null);
    try {
      setDraft(unwrap(await api.POST("/workflow/draft", { body: { prompt: text } })));
    } catch (e) {
      setDraft(undefined);
      setError(e);
      setInvalid(invalidDraft(e));
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    if (handed && !started.current) {
      started.current = true;
      void submit(handed);
    }
  }, [handed]);

  const blueprint = useMemo(() => (draft ? asBlueprint(draft.blueprint) : null), [draft]);
  const notes = useMemo(
    () => (blueprint && draft ? warningsByNode(blueprint, draft.warnings) : new Map<string, string[]>()),
    [blueprint, draft],
  );
  const node = blueprint ? findNode(blueprint, selected) : undefined;
  const problemNotes = useMemo(() => {
    const map = new Map<string, string[]>();
    for (const p of invalid?.errors ?? []) {
      if (p.node_id) map.set(p.node_id, [...(map.get(p.node_id) ?? []), `${(p.loc ?? []).join(".")}: ${p.message}`]);
    }
    return map;
  }, [invalid]);
  const invalidNode = invalid?.blueprint ? findNode(invalid.blueprint, selected) : undefined;

  return (
    <section>
      <h1>New workflow</h1>
      <form
        aria-label="Draft from a prompt"
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          void submit(prompt);
        }}
      >
        <label>
          Describe what should happen
          <textarea rows={3} value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="When a Razorpay payment is captured, WhatsApp the customer a receipt" />
        </label>
        <button type="submit" disabled={busy || !prompt.trim()}>{busy ? "Drafting…" : "Draft"}</button>
      </form>
      <ErrorNote error={error} />
      {invalid && (
        <>
          <ul className="errors" aria-label="Validation errors">
            {invalid.errors.map((p, i) => (
              <li key={i}><code>{p.node_id ?? ""} {(p.loc ?? []).join(".")}</code> {p.message}</li>
            ))}
          </ul>
          {invalid.blueprint && (
            <div className="canvas-layout">
              <Graph blueprint={invalid.blueprint} notes={problemNotes} selected={selected} onSelect={setSelected} label="The model's last, invalid draft" />
              {invalidNode && (
                <NodePanel node={invalidNode} tools={tools} problems={invalid.errors.filter((p) => p.node_id === invalidNode.id)} onClose={() => setSelected(null)} />
              )}
            </div>
          )}
        </>
      )}
      {draft && blueprint && (
        <>
          <div className="row">
            <h2 className="grow">{blueprint.name || "Draft"} <span className="muted small">v{draft.version}, {draft.attempts} model call(s)</span></h2>
            <Link className="button" to={`/ui/workflows/${draft.workflow_id}`}>Open in canvas</Link>
          </div>
          {draft.warnings.length > 0 && (
            <ul className="warnings" aria-label="Warnings">
              {draft.warnings.map((w) => (<li key={w} className="warning"><span aria-hidden="true">⚠ </span>{w}</li>))}
            </ul>
          )}
          <div className="canvas-layout">
            <Graph blueprint={blueprint} notes={notes} selected={selected} onSelect={setSelected} label="Drafted workflow" />
            {node && <NodePanel node={node} tools={tools} notes={notes.get(node.id)} onClose={() => setSelected(null)} />}
          </div>
        </>
      )}
    </section>
  );
}
