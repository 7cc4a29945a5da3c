// A run's or node's status as a badge: colour, icon and word (readable without colour).
import { STATE_ICON, type NodeState } from "../graph/blueprint";

const RUN_ICON: Record<string, string> = {
  ...STATE_ICON,
  cancelled: "⊘",
};

export function StatusBadge({ status }: { status: NodeState | string }) {
  return (
    <span className={`badge state-${status}`} data-status={status}>
      <span aria-hidden="true">{RUN_ICON[status] ?? "•"}</span> {status}
    </span>
  );
}

export function When({ at }: { at?: string | null }) {
  if (!at) return <span className="muted">—</span>;
  const date = new Date(at);
  return <time dateTime={at} title={date.toISOString()}>{date.toLocaleString()}</time>;
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof Error ? error.message : typeof error === "string" ? error : JSON.stringify(error);
  return (
    <p className="error" role="alert">
      {message}
    </p>
  );
}
