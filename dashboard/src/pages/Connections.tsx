// Connections: your credentials (GET /credentials) with their type, masked hint, last use and,
// for Razorpay, the webhook URL to give its dashboard; add one with a form drawn from its type's
// JSON Schema, replace its secret (PUT), delete it (a 409 lists the active workflows using it).
// Data fields are uncontrolled inputs read once on submit: a secret never becomes React state or
// a DOM attribute, and the API never sends it back, so the page cannot show it again.
import { useEffect, useId, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Link, useSearchParams } from "react-router";
import { api, ApiFailure, unwrap, type Credential, type CredentialType } from "../api/client";
import { CopyButton } from "../components/CopyButton";
import { ErrorNote, When } from "../components/Status";
import {
  fieldsOf,
  labelOf,
  problemsByField,
  typeSummary,
  useCredentialTypes,
  usedBy,
  valueOf,
  type CredentialField,
} from "../credentials";

export default function Connections() {
  const types = useCredentialTypes();
  const [rows, setRows] = useState<Credential[]>();
  const [error, setError] = useState<unknown>();
  const [notice, setNotice] = useState<string | null>(null);
  const [replacing, setReplacing] = useState<string | null>(null);

  const load = async () => {
    try {
      setRows(unwrap(await api.GET("/credentials")));
      setError(undefined);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const saved = (message: string) => {
    setNotice(message);
    setError(undefined);
    setReplacing(null);
    void load();
  };

  const remove = async (name: string) => {
    if (!window.confirm(`Delete the connection "${name}"? Workflows that name it can no longer use it.`)) return;
    setNotice(null);
    try {
      const result = await api.DELETE("/credentials/{name}", { params: { path: { name } } });
      if (!result.response.ok) unwrap(result); // 409 credential_in_use, 404
      saved(`Deleted "${name}".`);
    } catch (e) {
      setError(e);
    }
  };

  const current = rows?.find((r) => r.name === replacing);
  const currentType = types?.find((t) => t.type === current?.type);
  return (
    <section>
      <h1>Connections</h1>
      <p className="muted">
        The secrets your workflows call services with, stored encrypted. An action node names one
        in its <code>credential</code> (a webhook trigger names its signing secret the same way).
        Once saved, a secret is never shown again: only a masked hint.
      </p>
      {notice && <p className="notice" role="status">{notice}</p>}
      <Refusal error={error} />
      {rows && rows.length === 0 && <p className="muted">No connections yet: add one below.</p>}
      {rows && rows.length > 0 && (
        <div className="table-wrap">
          <table className="list">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">Type</th><th scope="col">Hint</th>
                <th scope="col">Last used</th><th scope="col">Webhook URL</th><th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.id} data-credential={row.name}>
                  <th scope="row">{row.name}</th>
                  <td>{labelOf(types, row.type)}</td>
                  <td><code data-testid="hint">{row.hint || "—"}</code></td>
                  <td>{row.last_used_at ? <When at={row.last_used_at} /> : <span className="muted">never</span>}</td>
                  <td>{row.webhook_url ? <WebhookUrl url={row.webhook_url} name={row.name} /> : <span className="muted">—</span>}</td>
                  <td className="actions">
                    <button type="button" aria-label={`Replace secret of ${row.name}`} aria-expanded={replacing === row.name}
                      onClick={() => { setNotice(null); setReplacing(replacing === row.name ? null : row.name); }}>
                      Replace secret
                    </button>
                    <button type="button" aria-label={`Delete ${row.name}`} onClick={() => void remove(row.name)}>Delete</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {current && currentType && (
        <ReplaceForm key={current.name} credential={current} type={currentType}
          onSaved={(c) => saved(`Replaced the secret of "${c.name}".`)} onCancel={() => setReplacing(null)} />
      )}
      {types && <AddForm types={types} onSaved={(c) => saved(`Saved "${c.name}".`)} />}
    </section>
  );
}

/** `data` from a form's inputs: each field's value as its type takes it (see `valueOf`), empty
 * ones left out (not set). */
function dataOf(form: HTMLFormElement, fields: CredentialField[]): Record<string, unknown> {
  const values = new FormData(form);
  const data: Record<string, unknown> = {};
  for (const field of fields) {
    const text = values.get(`data.${field.name}`);
    const value = typeof text === "string" ? valueOf(field, text) : null;
    if (value !== null) data[field.name] = value;
  }
  return data;
}

function AddForm({ types, onSaved }: { types: CredentialType[]; onSaved: (c: Credential) => void }) {
  const [params] = useSearchParams(); // ?name=&type= from a workflow's missing connection
  const wanted = params.get("type");
  const [kind, setKind] = useState(types.find((t) => t.type === wanted)?.type ?? types[0]?.type ?? "");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const id = useId();
  const type = types.find((t) => t.type === kind);
  const fields = type ? fieldsOf(type) : [];
  const problems = problemsByField(error);

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const name = String(new FormData(form).get("name") ?? "").trim();
    setBusy(true);
    setError(undefined);
    try {
      const saved = unwrap(await api.POST("/credentials", { body: { name, type: kind, data: dataOf(form, fields) } }));
      form.reset();
      onSaved(saved);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="box" aria-labelledby={`${id}-title`} onSubmit={(e) => void submit(e)}>
      <h2 id={`${id}-title`}>Add connection</h2>
      <div className="field" data-field="type">
        <label htmlFor={`${id}-kind`}>Type</label>
        <select id={`${id}-kind`} value={kind} aria-describedby={`${id}-type`}
          onChange={(e) => { setKind(e.target.value); setError(undefined); }}>
          {types.map((t) => <option key={t.type} value={t.type}>{t.label}</option>)}
        </select>
        {type && (
          <div className="muted small" id={`${id}-type`}>
            {typeSummary(type)}. Used by: {usedBy(type)}.
          </div>
        )}
      </div>
      <Field id={`${id}-name`} field="name" label="Name" required problems={problems.get("name")}
        description="What workflows call it: letters, digits, '_', '-', '.'; up to 64.">
        {(props) => <input {...props} name="name" defaultValue={params.get("name") ?? ""} placeholder="shop_razorpay" autoComplete="off" />}
      </Field>
      <DataFields key={kind} prefix={id} fields={fields} problems={problems} />
      <Refusal error={error} />
      <button type="submit" disabled={busy || !type}>{busy ? "Saving…" : "Save connection"}</button>
    </form>
  );
}

function ReplaceForm({ credential, type, onSaved, onCancel }: {
  credential: Credential;
  type: CredentialType;
  onSaved: (c: Credential) => void;
  onCancel: () => void;
}) {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const id = useId();
  const fields = fieldsOf(type);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    setBusy(true);
    setError(undefined);
    try {
      const saved = unwrap(await api.PUT("/credentials/{name}", {
        params: { path: { name: credential.name } },
        body: { data: dataOf(form, fields) },
      }));
      form.reset();
      onSaved(saved);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="box" aria-labelledby={`${id}-title`} onSubmit={(e) => void submit(e)}>
      <h2 id={`${id}-title`} ref={heading} tabIndex={-1}>Replace secret of {credential.name}</h2>
      <p className="muted small">
        Enter this {type.label} connection's fields again: they replace the old ones, and workflows
        that name it use them from their next step.
      </p>
      <DataFields prefix={id} fields={fields} problems={problemsByField(error)} />
      <Refusal error={error} />
      <div className="toolbar">
        <button type="submit" disabled={busy}>{busy ? "Saving…" : "Save new secret"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

/** A type's fields, each with its description and errors: secret ones as password inputs,
 * choices as a select (its default chosen), whole numbers as number inputs, lists as text. All
 * uncontrolled: read once on submit. */
function DataFields({ prefix, fields, problems }: {
  prefix: string;
  fields: CredentialField[];
  problems: Map<string, string[]>;
}) {
  return (
    <>
      {fields.map((f) => (
        <Field key={f.name} id={`${prefix}-${f.name}`} field={f.name} label={f.title} required={f.required} secret={f.secret}
          description={[f.description, f.input === "list" ? "Separate entries with commas." : ""].filter(Boolean).join(" ") || undefined}
          problems={problems.get(f.name)}>
          {(props) => <DataInput field={f} props={props} />}
        </Field>
      ))}
    </>
  );
}

const INPUT_TYPE = { text: "text", email: "email", url: "url", integer: "number", list: "text" } as const;

function DataInput({ field: f, props }: { field: CredentialField; props: InputProps }) {
  const name = `data.${f.name}`;
  if (f.input === "choice") {
    return (
      <select {...props} name={name} defaultValue={f.default}>
        {(!f.required && f.default === "") && <option value="">(not set)</option>}
        {(f.options ?? []).map((o) => <option key={o} value={o}>{o}{o === f.default ? " (default)" : ""}</option>)}
      </select>
    );
  }
  if (f.secret) return <input {...props} name={name} type="password" autoComplete="new-password" />;
  return (
    <input {...props} name={name} type={INPUT_TYPE[f.input]} autoComplete="off"
      placeholder={f.example ?? (f.default || undefined)}
      {...(f.input === "integer" ? { inputMode: "numeric" as const, step: 1, min: f.minimum, max: f.maximum } : {})} />
  );
}

interface InputProps {
  id: string;
  required: boolean;
  "aria-invalid": boolean;
  "aria-describedby"?: string;
}

/** A labelled input with its description and the API's problems with it, tied by ids. */
function Field({ id, field, label, required = false, secret = false, description, problems = [], children }: {
  id: string;
  /** The field's name (`data-field`, for tests and styles). */
  field: string;
  label: string;
  required?: boolean;
  secret?: boolean;
  description?: string;
  problems?: string[];
  children: (props: InputProps) => ReactNode;
}) {
  const described = [description && `${id}-about`, problems.length && `${id}-problem`].filter(Boolean).join(" ");
  return (
    <div className={`field${problems.length ? " field-error" : ""}`} data-field={field}>
      <label htmlFor={id}>
        {label}
        {required && <abbr title="required"> *</abbr>}
        {secret && <span className="muted small"> (secret)</span>}
      </label>
      {children({ id, required, "aria-invalid": problems.length > 0, "aria-describedby": described || undefined })}
      {description && <div className="muted small" id={`${id}-about`}>{description}</div>}
      {problems.length > 0 && (
        <div className="error small" id={`${id}-problem`} data-testid="field-problem">
          {problems.join("; ")}
        </div>
      )}
    </div>
  );
}

/** Why the API refused: no encryption key (503, its message as it is), a 409 that lists the
 * workflows using the connection (links), a 422 (the fields say what), or any other error. */
function Refusal({ error }: { error: unknown }) {
  if (!(error instanceof ApiFailure)) return <ErrorNote error={error} />;
  const { code, message, details } = error.error;
  if (code === "credentials_key_missing") {
    return (
      <div className="warning" role="alert" data-testid="key-missing">
        <strong>This server cannot store connections yet.</strong> <Backticked text={message} />
      </div>
    );
  }
  if (code === "credential_in_use") {
    const workflows = (details as { workflows?: { id: string; name: string }[] } | undefined)?.workflows ?? [];
    return (
      <div className="error" role="alert">
        <p>{message}.</p>
        <ul aria-label="Workflows using it">
          {workflows.map((w) => <li key={w.id}><Link to={`/ui/workflows/${w.id}`}>{w.name}</Link></li>)}
        </ul>
      </div>
    );
  }
  const problems = problemsByField(error);
  if (problems.size > 0) {
    const general = problems.get("") ?? [];
    return (
      <p className="error" role="alert">
        Not saved: {general.length ? general.join("; ") : "see the fields marked above."}
      </p>
    );
  }
  return <ErrorNote error={error} />;
}

/** Text with its `command` spans as code (the API's messages quote commands that way). */
function Backticked({ text }: { text: string }) {
  return <>{text.split("`").map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part))}</>;
}

/** A webhook URL with a button that copies it (or selects it, where the clipboard is closed). */
function WebhookUrl({ url, name }: { url: string; name: string }) {
  const text = useRef<HTMLElement>(null);
  return (
    <div className="webhook">
      <code ref={text} data-testid="webhook-url">{url}</code>{" "}
      <CopyButton text={url} target={text} label={`Copy the webhook URL of ${name}`} />
    </div>
  );
}
