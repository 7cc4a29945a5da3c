// A blueprint as the canvas reads it. The API types blueprints as free JSON objects (their
// JSON Schema is GET /blueprint/schema); this is the part of it the dashboard draws.
import type { NodeType } from "./kinds";

export interface BlueprintNode {
  id: string;
  /** One of the kinds of kinds.ts (a kind the dashboard does not know is drawn plainly). */
  type: NodeType | (string & {});
  name?: string | null;
  position?: { x: number; y: number } | null;
  trigger?: string;
  event?: string | null;
  cron?: string | null;
  intent?: string | null;
  service?: string;
  task?: string;
  params?: Record<string, unknown>;
  /** The owner's credential (connection) an action calls its service with. */
  credential?: string | null;
  conditions?: { branch: string; when: string }[];
  default?: string;
  duration?: string | number;
  match?: string | null;
  timeout?: string | number;
  output?: unknown;
  /** foreach: the list (a template or a literal list) and what runs per item. */
  items?: unknown;
  body?: { nodes: BlueprintNode[]; edges: BlueprintEdge[] } | null;
  workflow?: { workflow_id: string; version?: number | null } | null;
  concurrency?: number;
  on_error?: "fail" | "continue";
  /** workflow: the saved workflow it runs, and its trigger data. */
  workflow_id?: string;
  version?: number | null;
  input?: unknown;
  [field: string]: unknown;
}

export interface BlueprintEdge {
  source: string;
  target: string;
  branch?: string | null;
}

export interface Blueprint {
  schema_version?: number;
  name?: string | null;
  description?: string | null;
  nodes: BlueprintNode[];
  edges: BlueprintEdge[];
}

export function asBlueprint(value: unknown): Blueprint {
  const bp = value as Blueprint;
  return { ...bp, nodes: bp?.nodes ?? [], edges: bp?.edges ?? [] };
}

/** A foreach's body when it has one with nodes (not a foreach over a saved workflow). */
export function bodyOf(node: BlueprintNode): { nodes: BlueprintNode[]; edges: BlueprintEdge[] } | null {
  if (node.type !== "foreach" || !node.body || !Array.isArray(node.body.nodes) || node.body.nodes.length === 0) return null;
  return { nodes: node.body.nodes, edges: node.body.edges ?? [] };
}

/** Every node, those of foreach bodies too (after their foreach), with the foreach each is in:
 * node ids are unique across a blueprint, bodies included. */
export function allNodes(blueprint: Pick<Blueprint, "nodes">): { node: BlueprintNode; parent: string | null }[] {
  const found: { node: BlueprintNode; parent: string | null }[] = [];
  const visit = (nodes: BlueprintNode[], parent: string | null) => {
    for (const node of nodes) {
      found.push({ node, parent });
      const body = bodyOf(node);
      if (body) visit(body.nodes, node.id);
    }
  };
  visit(blueprint.nodes, null);
  return found;
}

/** The node with this id, at the top or in a body. */
export function findNode(blueprint: Blueprint, id: string | null | undefined): BlueprintNode | undefined {
  return id ? allNodes(blueprint).find((entry) => entry.node.id === id)?.node : undefined;
}

/** ``blueprint`` with the positions of ``moved`` (rounded), a body's nodes' too. */
export function withPositions(blueprint: Blueprint, moved: Map<string, { x: number; y: number }>): Blueprint {
  const place = (nodes: BlueprintNode[]): BlueprintNode[] =>
    nodes.map((n) => {
      const at = moved.get(n.id);
      const body = bodyOf(n);
      return {
        ...n,
        ...(at ? { position: { x: Math.round(at.x), y: Math.round(at.y) } } : {}),
        ...(body ? { body: { ...body, nodes: place(body.nodes) } } : {}),
      };
    });
  return { ...blueprint, nodes: place(blueprint.nodes) };
}

/** The saved workflow a node runs: a workflow node's, a foreach's over a saved workflow. */
export function calledWorkflow(node: BlueprintNode): { id: string; version: number | null } | null {
  if (node.type === "workflow" && node.workflow_id) return { id: node.workflow_id, version: node.version ?? null };
  if (node.type === "foreach" && node.workflow?.workflow_id) return { id: node.workflow.workflow_id, version: node.workflow.version ?? null };
  return null;
}

/** What a node does, in a few words (shown under its name). */
export function summary(node: BlueprintNode): string {
  switch (node.type) {
    case "trigger":
      return node.event ? `${node.trigger}: ${node.event}` : node.cron ? `schedule: ${node.cron}`
        : node.intent ? `intent: ${node.intent}` : `${node.trigger ?? "manual"} trigger`;
    case "action":
      return `${node.service}.${node.task}`;
    case "router":
      return `${node.conditions?.length ?? 0} rule(s), else ${node.default ?? "default"}`;
    case "delay":
      return `wait ${seconds(node.duration)}`;
    case "wait_for_event":
      return `${node.event}, timeout ${seconds(node.timeout)}`;
    case "foreach":
      return Array.isArray(node.items) ? `for each of ${node.items.length} items` : `for each item of ${text(node.items)}`;
    case "workflow":
      return node.version ? `runs v${node.version} of` : "runs the active version of";
    case "end":
      return "end";
    default:
      return node.type;
  }
}

function text(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A duration as the blueprint has it ("5m") or as stored (seconds). */
function seconds(value: string | number | undefined): string {
  return typeof value === "number" ? `${value}s` : String(value ?? "");
}

/** Node states a run or dry run shows; each has a colour AND an icon AND a word. */
export type NodeState =
  | "pending"
  | "queued"
  | "running"
  | "retrying"
  | "waiting"
  | "succeeded"
  | "failed"
  | "skipped";

export const STATE_ICON: Record<NodeState, string> = {
  pending: "○",
  queued: "◌",
  running: "◔",
  retrying: "↻",
  waiting: "‖",
  succeeded: "✓",
  failed: "✕",
  skipped: "⤼",
};

/** Node ids in each warning: quoted ids, services named first, quoted trigger events. */
export function warningsByNode(blueprint: Blueprint, warnings: string[]): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const add = (id: string, w: string) => found.set(id, [...(found.get(id) ?? []), w]);
  for (const warning of warnings) {
    for (const { node } of allNodes(blueprint)) {
      if (
        warning.includes(`'${node.id}'`) ||
        (node.type === "action" && warning.startsWith(`${node.service} `)) ||
        (node.type === "trigger" && node.event && warning.includes(`'${node.event}'`))
      ) {
        add(node.id, warning);
      }
    }
  }
  return found;
}

/** How two versions' nodes differ: added, removed, changed (content), moved (position only). */
export function diffNodes(before: Blueprint, after: Blueprint) {
  const strip = (n: BlueprintNode) => JSON.stringify({ ...n, position: undefined });
  const old = new Map(before.nodes.map((n) => [n.id, n]));
  const now = new Map(after.nodes.map((n) => [n.id, n]));
  const added = after.nodes.filter((n) => !old.has(n.id)).map((n) => n.id);
  const removed = before.nodes.filter((n) => !now.has(n.id)).map((n) => n.id);
  const changed: string[] = [];
  const moved: string[] = [];
  for (const n of after.nodes) {
    const o = old.get(n.id);
    if (!o) continue;
    if (strip(o) !== strip(n)) changed.push(n.id);
    else if (JSON.stringify(o.position) !== JSON.stringify(n.position)) moved.push(n.id);
  }
  const edgeKey = (e: BlueprintEdge) => `${e.source}→${e.target}${e.branch ? ` [${e.branch}]` : ""}`;
  const oldEdges = new Set(before.edges.map(edgeKey));
  const newEdges = new Set(after.edges.map(edgeKey));
  return {
    added,
    removed,
    changed,
    moved,
    edgesAdded: [...newEdges].filter((e) => !oldEdges.has(e)),
    edgesRemoved: [...oldEdges].filter((e) => !newEdges.has(e)),
  };
}
