// Where the canvas draws each node: its saved position, else a place found by the rules of the
// engine's layout (src/blueprint_engine/workflows/layout.py, same numbers: a test compares
// them). Every node has a footprint, X_GAP by Y_GAP for a card; a foreach with a body is a
// group drawn around its body, whose nodes are placed relative to it, under a BODY_HEADER
// and BODY_PAD in from its sides. Nodes without a position go below their placed parents,
// moved right until their footprint overlaps none; with none placed, in centred layers.
import { bodyOf, type Blueprint, type BlueprintEdge, type BlueprintNode } from "./blueprint";

export const X_GAP = 280;
export const Y_GAP = 150;
export const BODY_HEADER = 110;
export const BODY_PAD = 20;
/** A card as drawn (styles.css .card; its height varies a little with its notes). */
const CARD_WIDTH = 210;
const CARD_HEIGHT = 96;

export interface Point {
  x: number;
  y: number;
}

interface Box {
  width: number;
  height: number;
}

export interface Layout {
  /** Every node's position: on the canvas, or (a body's nodes) relative to their foreach. */
  at: Map<string, Point>;
  /** The drawn size of each foreach that has a body. */
  groups: Map<string, Box>;
}

export function layout(blueprint: Pick<Blueprint, "nodes" | "edges">): Layout {
  const result: Layout = { at: new Map(), groups: new Map() };
  place(blueprint.nodes, blueprint.edges, result);
  return result;
}

/** Positions of one graph's nodes (bodies first) into ``into``; returns their footprints. */
function place(nodes: BlueprintNode[], edges: BlueprintEdge[], into: Layout): Map<string, [number, number]> {
  const sizes = new Map(nodes.map((n) => [n.id, footprint(n, into)] as const));
  const incoming = new Map<string, string[]>(nodes.map((n) => [n.id, []]));
  for (const e of edges) incoming.get(e.target)?.push(e.source);
  const layer = new Map<string, number>();
  const depth = (id: string, seen: Set<string>): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    const parents = (incoming.get(id) ?? []).filter((p) => !seen.has(p) && incoming.has(p));
    const d = 1 + Math.max(-1, ...parents.map((p) => depth(p, new Set([...seen, id]))));
    layer.set(id, d);
    return d;
  };
  const rows = new Map<number, string[]>();
  for (const n of nodes) {
    const d = depth(n.id, new Set());
    rows.set(d, [...(rows.get(d) ?? []), n.id]);
  }
  const layered = new Map<string, Point>();
  let y = 0;
  for (const level of [...rows.keys()].sort((a, b) => a - b)) {
    const ids = rows.get(level)!;
    let x = (X_GAP - ids.reduce((sum, id) => sum + sizes.get(id)![0], 0)) / 2;
    for (const id of ids) {
      layered.set(id, { x, y });
      x += sizes.get(id)![0];
    }
    y += Math.max(...ids.map((id) => sizes.get(id)![1]));
  }
  const placed = new Map<string, Point>();
  for (const n of nodes) if (n.position) placed.set(n.id, { x: n.position.x, y: n.position.y });
  if (placed.size === 0) {
    for (const [id, at] of layered) placed.set(id, at);
  } else {
    const fresh = nodes.filter((n) => !n.position).map((n) => n.id);
    fresh.sort((a, b) => layer.get(a)! - layer.get(b)!);
    for (const id of fresh) {
      const spot = belowParents(incoming.get(id)!, placed, sizes, layered.get(id)!);
      placed.set(id, clearSpot(spot, sizes.get(id)!, placed, sizes));
    }
  }
  for (const [id, at] of placed) into.at.set(id, at);
  return sizes;
}

/** The footprint of ``node``; a foreach's body is placed here (relative to it), and its group
 * sized: its saved positions if every body node has one, else laid out afresh. */
function footprint(node: BlueprintNode, into: Layout): [number, number] {
  const body = bodyOf(node);
  if (!body) return [X_GAP, Y_GAP];
  const saved = body.nodes.every((n) => n.position);
  const sizes = place(saved ? body.nodes : body.nodes.map((n) => ({ ...n, position: null })), body.edges, into);
  if (!saved) {
    const left = Math.min(...body.nodes.map((n) => into.at.get(n.id)!.x));
    for (const n of body.nodes) {
      const at = into.at.get(n.id)!;
      into.at.set(n.id, { x: at.x - left + BODY_PAD, y: at.y + BODY_HEADER });
    }
  }
  let right = 0;
  let bottom = 0;
  let drawnRight = 0;
  let drawnBottom = 0;
  for (const n of body.nodes) {
    const at = into.at.get(n.id)!;
    const [width, height] = sizes.get(n.id)!;
    const drawn = into.groups.get(n.id) ?? { width: CARD_WIDTH, height: CARD_HEIGHT };
    right = Math.max(right, at.x + width);
    bottom = Math.max(bottom, at.y + height);
    drawnRight = Math.max(drawnRight, at.x + drawn.width);
    drawnBottom = Math.max(drawnBottom, at.y + drawn.height);
  }
  into.groups.set(node.id, {
    width: Math.max(CARD_WIDTH + 2 * BODY_PAD, drawnRight + BODY_PAD),
    height: Math.max(BODY_HEADER + CARD_HEIGHT, drawnBottom + BODY_PAD),
  });
  return [Math.max(X_GAP, right + BODY_PAD), Math.max(Y_GAP, bottom)];
}

function belowParents(parents: string[], placed: Map<string, Point>, sizes: Map<string, [number, number]>, fallback: Point): Point {
  const above = parents.filter((p) => placed.has(p));
  if (above.length === 0) return { ...fallback };
  return {
    x: above.reduce((sum, p) => sum + placed.get(p)!.x, 0) / above.length,
    y: Math.max(...above.map((p) => placed.get(p)!.y + sizes.get(p)![1])),
  };
}

/** ``spot`` moved right past every footprint it overlaps; ends within placed.size steps. */
function clearSpot(spot: Point, size: [number, number], placed: Map<string, Point>, sizes: Map<string, [number, number]>): Point {
  let x = spot.x;
  const [width, height] = size;
  for (let step = 0; step <= placed.size; step++) {
    const blockers: number[] = [];
    for (const [id, p] of placed) {
      const [w, h] = sizes.get(id)!;
      if (x < p.x + w && p.x < x + width && spot.y < p.y + h && p.y < spot.y + height) blockers.push(p.x + w);
    }
    if (blockers.length === 0) break;
    x = Math.max(...blockers);
  }
  return { x, y: spot.y };
}
