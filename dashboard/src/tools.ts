// The tool catalog (GET /tools): services, their tasks and each task's params JSON Schema.
import { useEffect, useState } from "react";
import { getJson } from "./api/client";

export interface Tool {
  service: string;
  description: string;
  sandbox: boolean;
  tasks: {
    name: string;
    description: string;
    params: { properties?: Record<string, unknown>; required?: string[] };
    /** Credential types a node of this task may name (`credential`); none: it takes none. */
    credential_types: string[];
  }[];
}

let cached: Promise<Tool[]> | null = null;

export function useTools(): Tool[] | undefined {
  const [tools, setTools] = useState<Tool[]>();
  useEffect(() => {
    cached ??= getJson<{ tools: Tool[] }>("/tools").then((r) => r.tools);
    cached.then(setTools, () => { cached = null; });
  }, []);
  return tools;
}
