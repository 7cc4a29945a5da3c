// The connections a workflow names (GET /workflows/{id} `credentials`): whether you have each,
// the nodes that use it, and for a missing one a link that opens the Connections page's form
// with its name and type filled in.
import { Link } from "react-router";
import type { CredentialNeed } from "../api/client";
import { addLink, labelOf, useCredentialTypes } from "../credentials";

export function NeededConnections({ needs, onSelect }: {
  needs: CredentialNeed[];
  onSelect: (nodeId: string) => void;
}) {
  const types = useCredentialTypes();
  if (needs.length === 0) return null;
  const missing = needs.filter((n) => !n.present).length;
  return (
    <section className="needs" aria-labelledby="needs-title" data-testid="needed-connections">
      <h2 id="needs-title">
        Connections{" "}
        {missing > 0 ? (
          <span className="badge state-failed"><span aria-hidden="true">✕</span> {missing} missing</span>
        ) : (
          <span className="badge state-succeeded"><span aria-hidden="true">✓</span> all present</span>
        )}
      </h2>
      <ul>
        {needs.map((need) => (
          <li key={need.name} data-credential={need.name} className={need.present ? undefined : "warning"}>
            <span aria-hidden="true">{need.present ? "✓ " : "⚠ "}</span>
            <code>{need.name}</code>{" "}
            {need.present ? (
              <>({labelOf(types, need.type)})</>
            ) : (
              <>
                is missing (its nodes take {need.types.map((t) => labelOf(types, t)).join(" or ") || "any type"}).{" "}
                <Link to={addLink(need)}>Add connection {need.name}</Link>
              </>
            )}
            <span className="muted small">
              {" · used by "}
              {need.nodes.map((id) => (
                <button key={id} type="button" className="link" onClick={() => onSelect(id)}>{id}</button>
              ))}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
