// The canvas: a blueprint drawn with React Flow from its nodes' positions (layout.ts places the
// ones without), optionally with each node's state (run, dry run), notes (warnings, validation
// errors) and extras (a loop's progress, links to the workflows and runs a node starts). A
// foreach with a body is a group: its body's nodes and edges drawn inside it.
import { useEffect, useMemo, useRef, useState, type ReactNode } from "react";
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
import { WorkflowLink } from "../components/WorkflowLink";
import { useWorkflowNames } from "../workflowNames";
import { STATE_ICON, allNodes, bodyOf, calledWorkflow, summary, type Blueprint, type BlueprintEdge, type BlueprintNode, type NodeState } from "./blueprint";
import { kindLabel, nodeIcon, serviceLabel } from "./kinds";
import { layout, type Point } from "./layout";

interface CardData extends Record<string, unknown> {
  node: BlueprintNode;
  /** The name of the saved workflow the node runs (undefined: loading, null: unreadable). */
  calls?: string | null;
  state?: NodeState;
  notes?: string[];
  extra?: ReactNode;
}

type CardNode = Node<CardData, "blueprint" | "loop">;

function CardHead({ node, state, calls }: { node: BlueprintNode; state?: NodeState; calls?: string | null }) {
  const called = calledWorkflow(node);
  const action = node.type === "action";
  const icon = nodeIcon(node);
  // An action is named by its service ("Email"); the summary line says its task.
  const kind = action ? serviceLabel(node.service) : kindLabel(node.type);
  return (
    <>
      <div className="card-head">
        <span className="card-icon" aria-hidden="true">{icon}</span>
        <span className="card-kind" title={action ? `${kindLabel(node.type)}: ${kind}` : kind}>{kind}</span>
        {state && (
          <span className="card-state" data-testid="node-state">
            <span aria-hidden="true">{STATE_ICON[state]}</span> {state}
          </span>
        )}
      </div>
      <div className="card-name">{node.name || node.id}</div>
      <div className="card-summary" title={summary(node)}>{summary(node)}</div>
      {called && (
        <div className="card-calls" data-testid="card-calls">
          <span aria-hidden="true">↳ </span>
          <WorkflowLink id={called.id} version={called.version} name={calls} />
        </div>
      )}
    </>
  );
}

function Notes({ notes }: { notes?: string[] }) {
  if (!notes || notes.length === 0) return null;
  return (
    <div className="card-notes" title={notes.join("\n")}>
      <span aria-hidden="true">⚠</span> {notes.length} note{notes.length > 1 ? "s" : ""}
    </div>
  );
}

function Card({ data, selected }: NodeProps<CardNode>) {
  const { node, state, notes, extra, calls } = data;
  return (
    <div
      className={`card kind-${node.type}${state ? ` state-${state}` : ""}${selected ? " selected" : ""}`}
      data-node-id={node.id}
      data-state={state ?? ""}
    >
      {node.type !== "trigger" && <Handle type="target" position={Position.Top} />}
      <CardHead node={node} state={state} calls={calls} />
      {extra && <div className="card-extra nodrag">{extra}</div>}
      <Notes notes={notes} />
      {node.type !== "end" && <Handle type="source" position={Position.Bottom} />}
    </div>
  );
}

/** A foreach with a body: a box whose head is the loop's card, its body's nodes inside. */
function Loop({ data, selected }: NodeProps<CardNode>) {
  const { node, state, notes, extra, calls } = data;
  return (
    <div
      className={`card loop kind-foreach${state ? ` state-${state}` : ""}${selected ? " selected" : ""}`}
      data-node-id={node.id}
      data-state={state ?? ""}
    >
      <Handle type="target" position={Position.Top} />
      <CardHead node={node} state={state} calls={calls} />
      {extra && <div className="card-extra nodrag">{extra}</div>}
      <Notes notes={notes} />
      <Handle type="source" position={Position.Bottom} />
    </div>
  );
}

const nodeTypes = { blueprint: Card, loop: Loop };

export interface GraphProps {
  blueprint: Blueprint;
  /** States by node id; a body's nodes by theirs (one item's: the caller picks which). */
  states?: Map<string, NodeState>;
  notes?: Map<string, string[]>;
  /** Shown on a node's card under its summary (progress, links). */
  extras?: Map<string, ReactNode>;
  selected?: string | null;
  onSelect?: (id: string | null) => void;
  /** Makes nodes draggable; called with every node's position after a drag (a body's nodes:
   * relative to their foreach). */
  onMove?: (moved: Map<string, Point>) => void;
  label: string;
}

export function Graph({ blueprint, states, notes, extras, selected, onSelect, onMove, label }: GraphProps) {
  const phone = useNarrow();
  const names = useWorkflowNames(allNodes(blueprint).flatMap(({ node }) => calledWorkflow(node)?.id ?? []));
  const initial = useMemo<CardNode[]>(() => {
    const placed = layout(blueprint);
    return allNodes(blueprint).map(({ node, parent }) => {
      const group = placed.groups.get(node.id);
      return {
        id: node.id,
        type: group ? "loop" : "blueprint",
        position: placed.at.get(node.id)!,
        data: { node },
        ariaLabel: `${kindLabel(node.type)} ${node.name || node.id}`,
        ...(group ? { style: { width: group.width, height: group.height } } : {}),
        ...(parent ? { parentId: parent, extent: "parent" as const } : {}),
      };
    });
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
        data: {
          ...n.data,
          state: states?.get(n.id),
          notes: notes?.get(n.id),
          extra: extras?.get(n.id),
          calls: names.get(calledWorkflow(n.data.node)?.id ?? ""),
        },
      })),
    [nodes, states, notes, extras, selected, names],
  );
  const edges = useMemo<Edge[]>(() => {
    const drawn: Edge[] = [];
    const add = (list: BlueprintEdge[], scope: string) =>
      list.forEach((e, i) =>
        drawn.push({
          id: `${scope}:${e.source}-${e.target}-${e.branch ?? ""}-${i}`,
          source: e.source,
          target: e.target,
          label: e.branch ?? undefined,
          className: e.branch === "timeout" ? "edge-timeout" : undefined,
          markerEnd: { type: MarkerType.ArrowClosed },
          labelBgPadding: [4, 2] as [number, number],
          zIndex: scope ? 1 : 0, // above the group they are drawn in
        }),
      );
    add(blueprint.edges, "");
    for (const { node } of allNodes(blueprint)) {
      const body = bodyOf(node);
      if (body) add(body.edges, node.id);
    }
    return drawn;
  }, [blueprint]);
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
