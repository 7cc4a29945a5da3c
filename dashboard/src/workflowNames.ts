// The names of the saved workflows that workflow nodes (and foreach nodes over a saved
// workflow) run: GET /workflows/{id}, once per id per page load.
import { useEffect, useState } from "react";
import { api, unwrap } from "./api/client";

const asked = new Map<string, Promise<string | null>>();

function nameOf(id: string): Promise<string | null> {
  let name = asked.get(id);
  if (!name) {
    name = api.GET("/workflows/{workflow_id}", { params: { path: { workflow_id: id } } }).then(
      (r) => unwrap(r).name,
      () => null, // not yours, or gone: the node says so
    );
    asked.set(id, name);
  }
  return name;
}

/** Each id's workflow name; null when it cannot be read, absent while loading. */
export function useWorkflowNames(ids: string[]): Map<string, string | null> {
  const [names, setNames] = useState(new Map<string, string | null>());
  const key = [...new Set(ids)].sort().join(",");
  useEffect(() => {
    let live = true;
    const wanted = key ? key.split(",") : [];
    Promise.all(wanted.map(async (id) => [id, await nameOf(id)] as const)).then((pairs) => {
      if (live) setNames(new Map(pairs));
    });
    return () => {
      live = false;
    };
  }, [key]);
  return names;
}
