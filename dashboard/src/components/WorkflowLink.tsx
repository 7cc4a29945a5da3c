// A link to a saved workflow by its name (the workflow a workflow node or a foreach runs).
import { Link } from "react-router";

/** ``name``: undefined while loading ("…"), null when it cannot be read (not yours, or gone). */
export function WorkflowLink({ id, version, name }: { id: string; version: number | null; name: string | null | undefined }) {
  const label = name === undefined ? "…" : name === null ? `workflow ${id.slice(0, 8)} (not found)` : name;
  return (
    <Link to={`/ui/workflows/${id}${version ? `?version=${version}` : ""}`} className="nodrag" data-testid="workflow-link">
      {label}
    </Link>
  );
}

/** "v3", or "active version" for a call that runs whichever version is active when it starts. */
export function versionText(version: number | null): string {
  return version ? `v${version}` : "active version";
}
