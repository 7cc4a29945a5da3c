// Draft: a sentence in, the drafted graph out, with the architect's warnings on their nodes.
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Link, useLocation } from "react-router";
import { api, unwrap, type Draft } from "../api/client";
import { ErrorNote } from "../components/Status";
import { NodePanel } from "../components/NodePanel";
import { Graph } from "../graph/Graph";
import { asBlueprint, warningsByNode } from "../graph/blueprint";
import { useTools } from "../tools";

export default function DraftPage() {
  const location = useLocation();
  const handed = (location.state as { prompt?: string } | null)?.prompt ?? "";
  const [prompt, setPrompt] = useState(handed);
  const [draft, setDraft] = useState<Draft>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [selected, setSelected] = useState<string | null>(null);
  const tools = useTools();
  const started = useRef(false);

  const submit = async (text: string) => {
    setBusy(true);
    setError(undefined);
    try {
      setDraft(unwrap(await api.POST("/workflow/draft", { body: { prompt: text } })));
      setSelected(null);
    } catch (e) {
      setError(e);
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
  const node = blueprint?.nodes.find((n) => n.id === selected);

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
