// The canvas: a blueprint drawn with React Flow from its nodes' positions, optionally with each
// node's state (run, dry run) and notes (warnings, validation errors).
import { useEffect, useMemo, useRef, useState } from "react";
import {
  Background,
  Controls,
  Handle,
  MarkerType,
  Position,
  ReactFlow,
  applyNodeChanges,
  type Edge,
  type Node,
  type NodeChange,
  type NodeProps,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import {
  KIND_ICON,
  KIND_LABEL,
  SERVICE_ICON,
  STATE_ICON,
  positions,
  summary,
  type Blueprint,
  type BlueprintNode,
  type NodeState,
} from "./blueprint";

interface CardData extends Record<string, unknown> {
  node: BlueprintNode;
  state?: NodeState;
  notes?: string[];
}

type CardNode = Node<CardData, "blueprint">;

function Card({ data, selected }: NodeProps<CardNode>) {
  const { node, state, notes } = data;
  const icon = node.type === "action" ? (SERVICE_ICON[node.service ?? ""] ?? KIND_ICON.action) : KIND_ICON[node.type];
  return (
    <div
      className={`card kind-${node.type}${state ? ` state-${state}` : ""}${selected ? " selected" : ""}`}
      data-node-id={node.id}
      data-state={state ?? ""}
    >
      {node.type !== "trigger" && <Handle type="target" position={Position.Top} />}
      <div className="card-head">
        <span className="card-icon" aria-hidden="true">{icon}</span>
        <span className="card-kind">{KIND_LABEL[node.type]}</span>
        {state && (
          <span className="card-state" data-testid="node-state">
            <span aria-hidden="true">{STATE_ICON[state]}</span> {state}
          </span>
        )}
      </div>
      <div className="card-name">{node.name || node.id}</div>
      <div className="card-summary">{summary(node)}</div>
      {notes && notes.length > 0 && (
        <div className="card-notes" title={notes.join("\n")}>
          <span aria-hidden="true">⚠</span> {notes.length} note{notes.length > 1 ? "s" : ""}
        </div>
      )}
      {node.type !== "end" && <Handle type="source" position={Position.Bottom} />}
    </div>
  );
}

const nodeTypes = { blueprint: Card };

export interface GraphProps {
  blueprint: Blueprint;
  states?: Map<string, NodeState>;
  notes?: Map<string, string[]>;
  selected?: string | null;
  onSelect?: (id: string | null) => void;
  /** Makes nodes draggable; called with every node's position after a drag. */
  onMove?: (moved: Map<string, { x: number; y: number }>) => void;
  label: string;
}

export function Graph({ blueprint, states, notes, selected, onSelect, onMove, label }: GraphProps) {
  const phone = useNarrow();
  const initial = useMemo<CardNode[]>(() => {
    const at = positions(blueprint);
    return blueprint.nodes.map((n) => ({
      id: n.id,
      type: "blueprint",
      position: at.get(n.id)!,
      data: { node: n },
      ariaLabel: `${KIND_LABEL[n.type]} ${n.name || n.id}`,
    }));
  }, [blueprint]);
  const [nodes, setNodes] = useState<CardNode[]>(initial);
  useEffect(() => setNodes(initial), [initial]);
  const current = useRef(nodes);
  current.current = nodes;

  const shown = useMemo(
    () =>
      nodes.map((n) => ({
        ...n,
        selected: n.id === selected,
        data: { ...n.data, state: states?.get(n.id), notes: notes?.get(n.id) },
      })),
    [nodes, states, notes, selected],
  );
  const edges = useMemo<Edge[]>(
    () =>
      blueprint.edges.map((e, i) => ({
        id: `${e.source}-${e.target}-${e.branch ?? ""}-${i}`,
        source: e.source,
        target: e.target,
        label: e.branch ?? undefined,
        className: e.branch === "timeout" ? "edge-timeout" : undefined,
        markerEnd: { type: MarkerType.ArrowClosed },
        labelBgPadding: [4, 2] as [number, number],
      })),
    [blueprint],
  );
  const editable = Boolean(onMove) && !phone;

  return (
    <div className="graph" role="region" aria-label={label}>
      <ReactFlow
        nodes={shown}
        edges={edges}
        nodeTypes={nodeTypes}
        fitView
        fitViewOptions={{ padding: 0.2 }}
        minZoom={0.2}
        nodesDraggable={editable}
        nodesConnectable={false}
        elementsSelectable
        onNodesChange={(changes: NodeChange<CardNode>[]) => setNodes((ns) => applyNodeChanges(changes, ns))}
        onNodeDragStop={(_, __, dragged) => {
          const moved = new Map(current.current.map((n) => [n.id, n.position]));
          for (const d of dragged) moved.set(d.id, d.position);
          onMove?.(moved);
        }}
        onNodeClick={(_, node) => onSelect?.(node.id)}
        onPaneClick={() => onSelect?.(null)}
        proOptions={{ hideAttribution: true }}
      >
        <Background gap={20} />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}

/** True on phone-sized screens: the canvas is read-only there. */
export function useNarrow(): boolean {
  const query = "(max-width: 700px)";
  const [narrow, setNarrow] = useState(() => window.matchMedia(query).matches);
  useEffect(() => {
    const list = window.matchMedia(query);
    const update = () => setNarrow(list.matches);
    list.addEventListener("change", update);
    return () => list.removeEventListener("change", update);
  }, []);
  return narrow;
}
