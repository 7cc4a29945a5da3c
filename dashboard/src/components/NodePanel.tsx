// The selected node: what it is, its params with {{ }} references highlighted, the fields its
// task accepts (GET /tools) or its kind takes (GET /blueprint/schema), the connection it calls
// with, the workflow it runs, its problems, and (in a run or dry run) what it got and gave.
import type { ReactNode } from "react";
import { Link } from "react-router";
import type { CredentialNeed } from "../api/client";
import { calledWorkflow, type BlueprintNode } from "../graph/blueprint";
import { kindLabel, serviceIcon, serviceLabel } from "../graph/kinds";
import { describeKind, useBlueprintSchema, type FieldSchema } from "../graph/schema";
import { addLink } from "../credentials";
import { Json, Templated } from "./Json";
import { StatusBadge } from "./Status";
import type { Tool } from "../tools";
import { useWorkflowNames } from "../workflowNames";
import { WorkflowLink, versionText } from "./WorkflowLink";

export interface NodeIO {
  status?: string;
  attempt?: number | null;
  input?: unknown;
  output?: unknown;
  error?: unknown;
  duration_ms?: number | null;
}

/** A validation problem: ``loc`` is the field path (``["nodes", 2, "params", "to"]``). */
export interface Problem {
  loc?: (string | number)[];
  node_id?: string | null;
  message: string;
}

interface Props {
  node: BlueprintNode;
  problems?: Problem[];
  tools?: Tool[];
  /** The workflow's connections (GET /workflows/{id}), to say whether the node's is present. */
  credentials?: CredentialNeed[];
  notes?: string[];
  io?: NodeIO;
  onClose: () => void;
  /** More about the node in this view (a loop's items, the run a node started). */
  children?: ReactNode;
}

function typeOf(schema: FieldSchema): string {
  if (schema.type) return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type;
  if (schema.anyOf) return schema.anyOf.map((s) => s.type ?? "…").join(" | ");
  return "any";
}

export function NodePanel({ node, tools, credentials, notes, problems, io, onClose, children }: Props) {
  const kind = describeKind(useBlueprintSchema(), node);
  const fieldProblems = (field: string) => (problems ?? []).filter((p) => p.loc?.includes(field));
  const task = node.type === "action"
    ? tools?.find((t) => t.service === node.service)?.tasks.find((t) => t.name === node.task)
    : undefined;
  const properties = (task?.params?.properties ?? {}) as Record<string, FieldSchema>;
  const required = new Set<string>(task?.params?.required ?? []);
  const { id, type, name, position, params, ...rest } = node;
  void position;
  return (
    <aside className="panel" aria-label={`Node ${name || id}`} data-testid="node-panel">
      <div className="panel-head">
        <h2>{name || id}</h2>
        <button type="button" onClick={onClose} aria-label="Close node details">×</button>
      </div>
      <p className="muted">
        {kindLabel(type)} · <code>{id}</code>
      </p>
      {kind.description && <p className="muted small" data-testid="kind-description"><Described text={kind.description} /></p>}
      {problems?.map((p, i) => (
        <p key={i} className="error" role="note">
          <span aria-hidden="true">✕ </span><code>{(p.loc ?? []).join(".")}</code> {p.message}
        </p>
      ))}
      {notes?.map((n) => (
        <p key={n} className="warning" role="note">
          <span aria-hidden="true">⚠ </span>{n}
        </p>
      ))}
      {io && (
        <section>
          <h3>This run</h3>
          <p>
            {io.status && <StatusBadge status={io.status} />}
            {io.attempt ? ` attempt ${io.attempt}` : ""}
            {io.duration_ms != null ? ` · ${Math.round(io.duration_ms)} ms` : ""}
          </p>
          {io.input !== undefined && io.input !== null && (<><h4>Input (resolved)</h4><Json value={io.input} label="Resolved input" /></>)}
          {io.output !== undefined && io.output !== null && (<><h4>Output</h4><Json value={io.output} label="Output" /></>)}
          {io.error ? (<><h4>Error</h4><Json value={io.error} label="Error" /></>) : null}
        </section>
      )}
      {children}
      <Calls node={node} />
      {type === "action" && (
        <section>
          <h3>
            <span aria-hidden="true">{serviceIcon(node.service)} </span>{serviceLabel(node.service)}:{" "}
            <code>{node.service}.{node.task}</code>
          </h3>
          {task ? <p className="muted">{task.description}</p> : <p className="warning">Unknown task.</p>}
          <Connection name={node.credential} need={credentials?.find((c) => c.name === node.credential)}
            accepted={task?.credential_types ?? []} />
          {task && (
            <table className="fields">
              <caption>Fields this task accepts</caption>
              <thead>
                <tr><th scope="col">Field</th><th scope="col">Type</th><th scope="col">Value</th></tr>
              </thead>
              <tbody>
                {Object.entries(properties).map(([field, schema]) => (
                  <tr key={field} data-field={field} className={fieldProblems(field).length ? "field-error" : undefined}>
                    <th scope="row">
                      {field}
                      {required.has(field) && <abbr title="required"> *</abbr>}
                      {schema.description && <div className="muted small">{schema.description}</div>}
                    </th>
                    <td><code>{typeOf(schema)}</code></td>
                    <td>
                      {params && field in params ? (
                        <code><Templated text={JSON.stringify(params[field])} /></code>
                      ) : (
                        <span className="muted">not set</span>
                      )}
                      {fieldProblems(field).map((p, i) => (
                        <div key={i} className="error small">{p.message}</div>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h4>Params</h4>
          <Json value={params ?? {}} label="Params" />
        </section>
      )}
      {type === "router" && (
        <section>
          <h3>Branches</h3>
          <ol>
            {node.conditions?.map((c) => (
              <li key={c.branch}>
                <strong>{c.branch}</strong> when <code>{c.when}</code>
              </li>
            ))}
            <li><strong>{node.default ?? "default"}</strong> otherwise</li>
          </ol>
        </section>
      )}
      {type !== "action" && type !== "router" && kind.fields.length > 0 && (
        <table className="fields">
          <caption>Settings</caption>
          <thead>
            <tr><th scope="col">Field</th><th scope="col">Value</th></tr>
          </thead>
          <tbody>
            {kind.fields.map(({ name: field, schema, required: needed }) => (
              <tr key={field} data-field={field} className={fieldProblems(field).length ? "field-error" : undefined}>
                <th scope="row">
                  {field}
                  {needed && <abbr title="required"> *</abbr>}
                  {schema.description && <div className="muted small">{schema.description}</div>}
                </th>
                <td>
                  {field in node && node[field] !== null ? (
                    <code><Templated text={JSON.stringify(node[field])} /></code>
                  ) : (
                    <span className="muted">{schema.default !== undefined && schema.default !== null ? `default ${JSON.stringify(schema.default)}` : "not set"}</span>
                  )}
                  {fieldProblems(field).map((p, i) => (
                    <div key={i} className="error small">{p.message}</div>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {type !== "action" && type !== "router" && kind.fields.length === 0 && Object.keys(rest).length > 0 && (
        <section>
          <h3>Settings</h3>
          <Json value={rest} label="Settings" />
        </section>
      )}
    </aside>
  );
}

/** A docstring-like text with its ``code`` spans shown as code. */
function Described({ text }: { text: string }) {
  return <>{text.split(/``(.+?)``/g).map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part))}</>;
}

/** The saved workflow a workflow node (or a foreach) runs, by name, with a link to it. */
function Calls({ node }: { node: BlueprintNode }) {
  const called = calledWorkflow(node);
  const names = useWorkflowNames(called ? [called.id] : []);
  if (!called) return null;
  return (
    <section>
      <h3>{node.type === "foreach" ? "Runs for each item" : "Runs"}</h3>
      <p data-testid="called-workflow">
        <WorkflowLink id={called.id} version={called.version} name={names.get(called.id)} />{" "}
        <span className="muted small">({versionText(called.version)})</span>
      </p>
    </section>
  );
}

/** The connection an action calls with: its name and, on a workflow's page, whether you have it;
 * without one, what the tool falls back to. */
function Connection({ name, need, accepted }: { name?: string | null; need?: CredentialNeed; accepted: string[] }) {
  if (!name) {
    if (accepted.length === 0) return null;
    return (
      <p className="muted small" data-testid="node-credential">
        No connection: it uses the deployment's settings, else sandbox mode (takes {accepted.join(", ")}).
      </p>
    );
  }
  return (
    <p data-testid="node-credential">
      Connection: <code>{name}</code>{" "}
      {need?.present === true && <span className="badge state-succeeded"><span aria-hidden="true">✓</span> present</span>}
      {need?.present === false && (
        <>
          <span className="badge state-failed"><span aria-hidden="true">✕</span> missing</span>{" "}
          <Link to={addLink(need)}>Add it</Link>
        </>
      )}
    </p>
  );
}
