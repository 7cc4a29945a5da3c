// A blueprint as the canvas reads it. The API types blueprints as free JSON objects (their
// JSON Schema is GET /blueprint/schema); this is the part of it the dashboard draws.

export type NodeType = "trigger" | "action" | "router" | "delay" | "wait_for_event" | "end";

export interface BlueprintNode {
  id: string;
  type: NodeType;
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
    case "end":
      return "end";
  }
}

/** A duration as the blueprint has it ("5m") or as stored (seconds). */
function seconds(value: string | number | undefined): string {
  return typeof value === "number" ? `${value}s` : String(value ?? "");
}

export const KIND_ICON: Record<NodeType, string> = {
  trigger: "⚡",
  action: "▶",
  router: "⋔",
  delay: "◷",
  wait_for_event: "⚐",
  end: "■",
};

export const KIND_LABEL: Record<NodeType, string> = {
  trigger: "Trigger",
  action: "Action",
  router: "Router",
  delay: "Delay",
  wait_for_event: "Wait for event",
  end: "End",
};

export const SERVICE_ICON: Record<string, string> = {
  whatsapp: "✆",
  razorpay: "₹",
  http: "⇄",
  transform: "⚙",
  llm: "✎",
};

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
    for (const node of blueprint.nodes) {
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

/** Places nodes without a position in layers (top to bottom), like the drafts' layout. */
export function positions(blueprint: Blueprint): Map<string, { x: number; y: number }> {
  const placed = new Map<string, { x: number; y: number }>();
  const depth = new Map<string, number>();
  const incoming = new Map<string, string[]>();
  for (const e of blueprint.edges) incoming.set(e.target, [...(incoming.get(e.target) ?? []), e.source]);
  const depthOf = (id: string, seen: Set<string>): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...(incoming.get(id) ?? []).map((s) => depthOf(s, seen))) + 1;
    depth.set(id, d);
    return d;
  };
  const perLayer = new Map<number, number>();
  for (const node of blueprint.nodes) {
    if (node.position) {
      placed.set(node.id, { x: node.position.x, y: node.position.y });
      continue;
    }
    const d = depthOf(node.id, new Set());
    const column = perLayer.get(d) ?? 0;
    perLayer.set(d, column + 1);
    placed.set(node.id, { x: column * 260, y: d * 140 });
  }
  return placed;
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
