// A webhook-triggered workflow's own URL (README "Webhook triggers", GET /workflows/{id}/hook):
// the URL with its token hidden, whether it answers (live) and checks signatures (signed), when
// it was last used. The full URL is known only right after it was made (the save or activation
// that made it) or rotated: then it is shown with a Copy button and a note that it will not be
// shown again. Rotating asks first, since the old URL stops at once. A curl command posts a
// sample body built from what the workflow reads of `trigger_data.body`.
import { useEffect, useId, useRef, useState, type KeyboardEvent } from "react";
import { api, ApiFailure, unwrap, type HookUrl, type Workflow } from "../api/client";
import { asBlueprint, type Blueprint } from "../graph/blueprint";
import { baseOf, curlExample, sampleBody, signatureHeader, webhookTrigger } from "../webhook";
import { CopyButton } from "./CopyButton";
import { ErrorNote, When } from "./Status";

interface Props {
  workflow: Workflow;
  /** The version shown on the page. */
  blueprint: Blueprint;
  /** `hook.path` (token included) from the answer that just made the hook: a save or an
   * activation on this page. */
  madePath: string | null;
}

/** The blueprint whose trigger the hook answers for: the active version's when one is active
 * (fetched when the page shows another), else the version shown. */
function useGoverningBlueprint(workflow: Workflow, shown: Blueprint): Blueprint {
  const active = workflow.active_version ?? null;
  const elsewhere = active !== null && active !== workflow.version;
  const [fetched, setFetched] = useState<{ version: number; blueprint: Blueprint }>();
  useEffect(() => {
    if (!elsewhere || active === null) return;
    let current = true;
    api.GET("/workflows/{workflow_id}", { params: { path: { workflow_id: workflow.id }, query: { version: active } } })
      .then(unwrap)
      .then((w) => { if (current) setFetched({ version: active, blueprint: asBlueprint(w.blueprint) }); }, () => undefined);
    return () => { current = false; };
  }, [workflow.id, active, elsewhere]);
  return elsewhere && fetched?.version === active ? fetched.blueprint : shown;
}

/** Whether ``url`` carries the hook's current token (its first characters are ``hint``). */
function current(url: string, hint: string): boolean {
  return (url.split("/").pop() ?? "").startsWith(hint);
}

export function HookPanel({ workflow, blueprint, madePath }: Props) {
  const governing = useGoverningBlueprint(workflow, blueprint);
  const trigger = webhookTrigger(governing);
  const [details, setDetails] = useState<HookUrl | null>(); // undefined: loading; null: none
  const [revealed, setRevealed] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const id = useId();
  const rotateButton = useRef<HTMLButtonElement>(null);
  const dialog = useRef<HTMLParagraphElement>(null);
  const urlBlock = useRef<HTMLDivElement>(null);
  const urlText = useRef<HTMLElement>(null);
  const curlText = useRef<HTMLPreElement>(null);
  const focusUrl = useRef(false);

  // The hook with its absolute URL hint, again whenever the page's copy of it changes.
  const known = workflow.hook ? JSON.stringify(workflow.hook) : null;
  useEffect(() => {
    if (known === null) {
      setDetails(null);
      return;
    }
    let stale = false;
    api.GET("/workflows/{workflow_id}/hook", { params: { path: { workflow_id: workflow.id } } }).then(unwrap).then(
      (hook) => { if (!stale) setDetails(hook); },
      (e: unknown) => {
        if (stale) return;
        if (e instanceof ApiFailure && e.error.code === "hook_not_found") setDetails(null);
        else setError(e);
      },
    );
    return () => { stale = true; };
  }, [workflow.id, known]);

  // A save or activation that made the hook showed its path once: show its full URL.
  const base = details ? baseOf(details.url_hint, details.path_hint) : null;
  useEffect(() => {
    if (madePath && base !== null) {
      focusUrl.current = true;
      setRevealed(base + madePath);
    }
  }, [madePath, base]);

  useEffect(() => {
    if (confirming) dialog.current?.focus();
  }, [confirming]);
  useEffect(() => {
    if (revealed && focusUrl.current) {
      focusUrl.current = false;
      urlBlock.current?.focus();
    }
  }, [revealed]);

  const shownTrigger = webhookTrigger(blueprint);
  if (!workflow.hook && !details && !shownTrigger && !trigger) return null;

  const rotate = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const answer = unwrap(await api.POST("/workflows/{workflow_id}/hook/rotate", { params: { path: { workflow_id: workflow.id } } }));
      setDetails(answer);
      setConfirming(false);
      focusUrl.current = true;
      setRevealed(answer.url ?? null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const cancel = () => {
    setConfirming(false);
    rotateButton.current?.focus();
  };
  const hide = () => {
    setRevealed(null);
    rotateButton.current?.focus();
  };
  const onDialogKey = (e: KeyboardEvent) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      cancel();
    }
  };

  const hook = details;
  const fullUrl = hook && revealed && current(revealed, hook.token_hint) ? revealed : null;
  const signed = hook?.signed || Boolean(trigger?.credential);
  const header = signatureHeader(trigger);
  const curl = hook
    ? curlExample({ url: fullUrl, urlHint: hook.url_hint, body: sampleBody(governing), signed, header, credential: trigger?.credential })
    : null;

  return (
    <section className="hook" aria-labelledby={`${id}-title`} data-testid="hook-panel">
      <h2 id={`${id}-title`}>Webhook URL</h2>
      {details === undefined && !error && <p className="muted">Loading…</p>}
      {details === null && (
        <>
          <p>
            No URL yet. Activating a version with a webhook trigger makes it (shown once), or
            make it now.
          </p>
          <button type="button" ref={rotateButton} onClick={() => void rotate()} disabled={busy}>
            {busy ? "Making…" : "Make URL"}
          </button>
        </>
      )}
      {hook && (
        <>
          <div className={`hook-url${fullUrl ? " revealed" : ""}`} ref={urlBlock} tabIndex={-1} role="group"
            aria-labelledby={`${id}-url`} aria-describedby={`${id}-once`}>
            <span id={`${id}-url`} className="hook-label">{fullUrl ? "Full URL" : "URL (token hidden)"}</span>{" "}
            <code ref={urlText} data-testid="hook-url">{fullUrl ?? hook.url_hint}</code>{" "}
            <CopyButton text={fullUrl ?? ""} target={urlText} label="Copy URL" className="" disabled={!fullUrl}>
              Copy URL
            </CopyButton>
            {fullUrl ? (
              <p className="warning" id={`${id}-once`} data-testid="hook-once">
                <strong>Copy it now: this URL will not be shown again.</strong> Only its first
                characters are kept; if you lose it, rotate for a new one.{" "}
                <button type="button" className="link" onClick={hide}>Hide it</button>
              </p>
            ) : (
              <p className="muted small" id={`${id}-once`}>
                The full URL holds a secret token, shown only once: right after it is made or
                rotated. Lost it? Rotate for a new one.
              </p>
            )}
          </div>
          <dl className="facts">
            <dt>Status</dt>
            <dd data-testid="hook-live">
              {hook.live ? (
                <><span className="badge state-succeeded"><span aria-hidden="true">●</span> live</span> · a POST to it starts a run</>
              ) : (
                <><span className="badge"><span aria-hidden="true">○</span> not live</span> ·{" "}
                  {workflow.active ? "the active version's trigger is not a webhook" : "activate the workflow for it to answer"}; until then it answers 404</>
              )}
            </dd>
            <dt>Signature</dt>
            <dd data-testid="hook-signed">
              {signed ? (
                <>
                  {hook.signed ? "required" : "required once this version is live"}: HMAC-SHA256 of the body
                  in <code>{header}</code>
                  {trigger?.credential ? <>, keyed with connection <code>{trigger.credential}</code></> : null}
                </>
              ) : (
                "not checked: anyone with the URL can start runs"
              )}
            </dd>
            <dt>Last used</dt>
            <dd data-testid="hook-last-used">{hook.last_used_at ? <When at={hook.last_used_at} /> : <span className="muted">never</span>}</dd>
            <dt>Made</dt>
            <dd>
              <When at={hook.created_at} />
              {hook.rotated_at && <>; rotated <When at={hook.rotated_at} /></>}
            </dd>
          </dl>
          <div className="toolbar">
            <button type="button" ref={rotateButton} onClick={() => { setError(undefined); setConfirming(true); }}
              disabled={busy} aria-haspopup="dialog" aria-expanded={confirming}>
              Rotate URL
            </button>
          </div>
          {confirming && (
            <div className="confirm" role="alertdialog" aria-labelledby={`${id}-confirm`} aria-describedby={`${id}-confirm-why`}
              onKeyDown={onDialogKey}>
              <p id={`${id}-confirm`} ref={dialog} tabIndex={-1}><strong>Rotate this workflow's URL?</strong></p>
              <p id={`${id}-confirm-why`}>
                The current URL stops working at once: whatever posts to it gets 404 until it uses
                the new one. The new URL is shown once, here.
              </p>
              <div className="toolbar">
                <button type="button" className="danger" onClick={() => void rotate()} disabled={busy}>
                  {busy ? "Rotating…" : "Rotate now"}
                </button>
                <button type="button" onClick={cancel} disabled={busy}>Cancel</button>
              </div>
            </div>
          )}
        </>
      )}
      <ErrorNote error={error} />
      {curl && (
        <details className="curl">
          <summary>Try it with curl</summary>
          <p className="muted small">
            Posts a JSON body with the fields this workflow reads from <code>trigger_data.body</code>
            {signed ? <>, signed as the hook requires</> : null}; put your own values in place
            of <code>"example"</code>.
            {fullUrl ? null : <> Set <code>HOOK</code> to the full URL first.</>}
          </p>
          <pre ref={curlText} data-testid="hook-curl">{curl}</pre>
          <CopyButton text={curl} target={curlText} label="Copy curl command" className="">Copy curl command</CopyButton>
        </details>
      )}
    </section>
  );
}
