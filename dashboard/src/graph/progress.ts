// A run's progress as the canvas shows it, from its log rows (GET /runs/{id}/stream) and child
// runs (GET /runs?parent_run_id=): each node's state, and a foreach's items. A body's steps
// have ids ``<foreach step id>.<index>.<node id>``; an item of a foreach over a saved workflow
// is the child run of step ``<foreach step id>.<index>``.
import type { LogRow, RunSummary } from "../api/client";
import { bodyOf, type Blueprint, type BlueprintEdge, type BlueprintNode, type NodeState } from "./blueprint";

const ENDED = new Set(["succeeded", "failed", "skipped"]);

/** The last log row of each step id (rows come in write order). */
export function latestByStep(logs: LogRow[]): Map<string, LogRow> {
  return new Map(logs.map((row) => [row.step_id, row]));
}

/** Where a graph's walk is: not started, going, or over. */
export type Phase = "queued" | "running" | "ended";

/**
 * The state of each of ``nodes``: its status (from ``status``, by node id), or for one without
 * any: ``queued`` before the walk starts, ``running`` while it goes and the node is next (an
 * entry node, or its sources ended and one succeeded), else ``pending``.
 */
export function graphStates(nodes: BlueprintNode[], edges: BlueprintEdge[], status: Map<string, string>, phase: Phase): Map<string, NodeState> {
  const states = new Map<string, NodeState>();
  for (const node of nodes) {
    const known = status.get(node.id);
    if (known && known !== "pending") {
      states.set(node.id, known as NodeState);
      continue;
    }
    const sources = edges.filter((e) => e.target === node.id).map((e) => status.get(e.source) ?? "pending");
    const ready = sources.length === 0 || (sources.some((s) => s === "succeeded") && sources.every((s) => ENDED.has(s)));
    states.set(node.id, phase === "queued" ? "queued" : phase === "running" && ready ? "running" : "pending");
  }
  return states;
}

export interface ItemProgress {
  index: number;
  state: NodeState;
  /** An item of a foreach over a saved workflow: its child run (once started). */
  child?: RunSummary;
}

export interface LoopProgress {
  /** How many items the list has; null while unknown (a template not resolved yet). */
  total: number | null;
  /** Items that ended (succeeded or failed), and of them failed. */
  ended: number;
  failed: number;
  items: ItemProgress[];
}

/** "3/12 items, 1 failed" (or "3 items done" while the list's length is unknown). */
export function progressText(p: LoopProgress): string {
  const failed = p.failed ? `, ${p.failed} failed` : "";
  return p.total === null ? `${p.ended} item${p.ended === 1 ? "" : "s"} done${failed}` : `${p.ended}/${p.total} items${failed}`;
}

/**
 * The items of foreach ``node`` whose step id is ``stepId``. The list's length comes from the
 * loop's own row once it ended, else from a literal list, else from ``context`` when
 * ``items`` is a single reference such as ``{{ steps.fetch.output.rows }}``.
 */
export function loopProgress(
  node: BlueprintNode,
  stepId: string,
  rows: Map<string, LogRow>,
  children: Map<string, RunSummary>,
  context: Record<string, unknown>,
): LoopProgress {
  const own = rows.get(stepId);
  const counted = (own?.input as { count?: unknown } | null)?.count;
  const items = Array.isArray(node.items) ? node.items : resolve(node.items, context);
  let total: number | null = typeof counted === "number" ? counted : Array.isArray(items) ? items.length : null;
  let seen = 0;
  const prefix = `${stepId}.`;
  for (const key of [...rows.keys(), ...children.keys()]) {
    if (!key.startsWith(prefix)) continue;
    const index = Number(key.slice(prefix.length).split(".")[0]);
    if (Number.isInteger(index)) seen = Math.max(seen, index + 1);
  }
  if (total !== null) total = Math.max(total, seen);
  const body = bodyOf(node);
  const list: ItemProgress[] = [];
  for (let index = 0; index < (total ?? seen); index++) {
    const at = `${stepId}.${index}`;
    if (body) {
      list.push({ index, state: itemState(body.nodes, body.nodes.map((b) => rows.get(`${at}.${b.id}`))) });
    } else {
      const child = children.get(at);
      const row = rows.get(at);
      const state = row && row.status !== "waiting" ? (row.status as NodeState) : child ? childState(child.status) : "pending";
      list.push({ index, state, child });
    }
  }
  const output = own?.status === "succeeded" ? (own.output as { count?: number; failed?: number } | null) : null;
  const ended = output?.count ?? list.filter((i) => i.state === "succeeded" || i.state === "failed").length;
  const failed = output?.failed ?? list.filter((i) => i.state === "failed").length;
  return { total, ended, failed, items: list };
}

/** One item's state from its body nodes' last rows (in body order). */
function itemState(nodes: BlueprintNode[], rows: (LogRow | undefined)[]): NodeState {
  if (rows.some((r, i) => r?.status === "failed" && nodes[i].on_error !== "continue")) return "failed";
  if (rows.every((r) => r && ENDED.has(r.status))) return "succeeded";
  if (rows.some((r) => r?.status === "waiting")) return "waiting";
  if (rows.some((r) => r?.status === "retrying")) return "retrying";
  return rows.some(Boolean) ? "running" : "pending";
}

function childState(status: string): NodeState {
  return status === "cancelled" ? "failed" : (status as NodeState);
}

/** The item a loop shows when none was picked: its first failed one, else the last begun. */
export function defaultItem(p: LoopProgress): number {
  const failed = p.items.find((i) => i.state === "failed");
  if (failed) return failed.index;
  const begun = p.items.filter((i) => i.state !== "pending");
  return begun.length ? begun[begun.length - 1].index : 0;
}

/** Each node's step id when each loop shows item ``shown(loop id)``: a body node's is
 * ``<loop step id>.<item>.<node id>``. */
export function stepIds(blueprint: Blueprint, shown: (loopId: string) => number): Map<string, string> {
  const ids = new Map<string, string>();
  const visit = (nodes: BlueprintNode[], prefix: string) => {
    for (const node of nodes) {
      const id = `${prefix}${node.id}`;
      ids.set(node.id, id);
      const body = bodyOf(node);
      if (body) visit(body.nodes, `${id}.${shown(node.id)}.`);
    }
  };
  visit(blueprint.nodes, "");
  return ids;
}

/** ``{{ a.b[0].c }}`` (a template that is one reference, nothing else) looked up in
 * ``context``; undefined for any other value or a path that is not there. */
function resolve(template: unknown, context: Record<string, unknown>): unknown {
  if (typeof template !== "string") return undefined;
  const match = /^\s*\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*)\s*\}\}\s*$/.exec(template);
  if (!match) return undefined;
  let value: unknown = context;
  for (const [, name, index] of match[1].matchAll(/([A-Za-z_]\w*)|\[(\d+)\]/g)) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[name ?? Number(index)];
  }
  return value;
}
