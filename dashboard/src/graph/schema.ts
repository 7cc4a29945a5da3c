// What the engine says about each node kind (GET /blueprint/schema, JSON Schema 2020-12): what
// a kind does and the fields it takes, with their descriptions and defaults. The node panel
// lists a node's fields from it, so a field the engine adds shows without a dashboard change.
import { useEffect, useState } from "react";
import { getJson } from "../api/client";
import type { BlueprintNode } from "./blueprint";

export interface FieldSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  const?: unknown;
  anyOf?: FieldSchema[];
  $ref?: string;
}

interface KindSchema {
  description?: string;
  properties?: Record<string, FieldSchema>;
  required?: string[];
}

interface BlueprintSchema {
  $defs?: Record<string, KindSchema>;
  properties?: {
    nodes?: { items?: { discriminator?: { mapping?: Record<string, string | { oneOf?: { $ref: string }[] }> } } };
  };
}

export interface KindField {
  name: string;
  schema: FieldSchema;
  required: boolean;
}

/** Fields every node has, shown elsewhere in the panel (or drawn: a body). */
const SHOWN_ELSEWHERE = new Set(["id", "type", "name", "position", "body"]);

let cached: Promise<BlueprintSchema> | null = null;

export function useBlueprintSchema(): BlueprintSchema | undefined {
  const [schema, setSchema] = useState<BlueprintSchema>();
  useEffect(() => {
    cached ??= getJson<BlueprintSchema>("/blueprint/schema");
    cached.then(setSchema, () => {
      cached = null;
    });
  }, []);
  return schema;
}

/** The schema of ``node``'s kind (of its trigger kind, for a trigger), if the engine has it. */
function kindSchema(schema: BlueprintSchema, node: BlueprintNode): KindSchema | undefined {
  const target = schema.properties?.nodes?.items?.discriminator?.mapping?.[node.type];
  const defOf = (ref: string) => schema.$defs?.[ref.split("/").pop() ?? ""];
  if (typeof target === "string") return defOf(target);
  const triggers = (target?.oneOf ?? []).map((r) => defOf(r.$ref)).filter((d): d is KindSchema => Boolean(d));
  return triggers.find((d) => d.properties?.trigger?.const === (node.trigger ?? "manual"));
}

/** What ``node``'s kind does and the fields it takes (besides id, type, name, position, body). */
export function describeKind(schema: BlueprintSchema | undefined, node: BlueprintNode): { description?: string; fields: KindField[] } {
  const kind = schema ? kindSchema(schema, node) : undefined;
  if (!kind) return { fields: [] };
  const required = new Set(kind.required ?? []);
  const fields = Object.entries(kind.properties ?? {})
    .filter(([name, field]) => !SHOWN_ELSEWHERE.has(name) && field.const === undefined)
    .map(([name, field]) => ({ name, schema: field, required: required.has(name) }));
  return { description: kind.description, fields };
}
