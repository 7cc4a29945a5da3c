// Credential types (GET /credentials/types) and what the forms derive from them: each type's
// fields from its JSON Schema (secret ones are `writeOnly`), and a 422's problems by field.
import { useEffect, useState } from "react";
import { api, ApiFailure, unwrap, type CredentialNeed, type CredentialType } from "./api/client";

/** How a field is entered: text (a password input when secret), an email or URL, a whole
 * number, one of a few choices, or a list typed as comma-separated entries. */
export type FieldInput = "text" | "email" | "url" | "integer" | "choice" | "list";

/** A field of a credential type, as the form draws it. */
export interface CredentialField {
  name: string;
  title: string;
  description?: string;
  required: boolean;
  /** `writeOnly` (Pydantic's SecretStr): a password input, never shown again. */
  secret: boolean;
  example?: string;
  input: FieldInput;
  /** A choice's options (`enum`). */
  options?: string[];
  /** The schema's default, as text ("" when it has none or it is null). */
  default: string;
  minimum?: number;
  maximum?: number;
}

interface PropertySchema {
  title?: string;
  description?: string;
  type?: string;
  format?: string;
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  writeOnly?: boolean;
  examples?: unknown[];
  anyOf?: PropertySchema[];
}

interface ObjectSchema {
  properties?: Record<string, PropertySchema>;
  required?: string[];
}

function inputOf(variants: PropertySchema[]): { input: FieldInput; options?: string[] } {
  const choice = variants.find((v) => Array.isArray(v.enum));
  if (choice) return { input: "choice", options: (choice.enum ?? []).map(String) };
  if (variants.some((v) => v.type === "integer")) return { input: "integer" };
  if (variants.some((v) => v.type === "array")) return { input: "list" };
  if (variants.some((v) => v.format === "email")) return { input: "email" };
  if (variants.some((v) => v.format === "uri")) return { input: "url" };
  return { input: "text" };
}

/** The fields of a type's `data`, in the schema's order. An optional field is `anyOf: [...,
 * null]`: an empty input means "not set". Lists (`allowed_hosts`) are typed comma-separated. */
export function fieldsOf(type: CredentialType): CredentialField[] {
  const schema = type.schema as ObjectSchema;
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const variants = [property, ...(property.anyOf ?? [])];
    const example = property.examples?.[0];
    const bounds = variants.find((v) => v.minimum !== undefined || v.maximum !== undefined);
    return {
      name,
      title: property.title ?? name,
      description: property.description,
      required: required.has(name),
      secret: variants.some((v) => v.writeOnly === true),
      example: typeof example === "string" ? example : undefined,
      ...inputOf(variants),
      default: property.default === undefined || property.default === null ? "" : String(property.default),
      minimum: bounds?.minimum,
      maximum: bounds?.maximum,
    };
  });
}

/** A field's value as the API takes it: a whole number for an integer field (text that is not
 * one goes as it is, for the API to refuse beside the field), a list of the comma- or
 * space-separated entries for a list; null when empty (not set). */
export function valueOf(field: CredentialField, text: string): unknown {
  const value = field.secret ? text : text.trim();
  if (value === "") return null;
  if (field.input === "integer") return /^-?\d{1,15}$/.test(value) ? Number(value) : value;
  if (field.input === "list") return value.split(/[\s,]+/).filter(Boolean);
  return value;
}

/** Who uses a type: the services that take it, and the triggers (`webhook_secret`: webhook
 * triggers, to check signatures with) — a type may have either or neither. */
export function usedBy(type: CredentialType): string {
  const uses = [...type.services, ...(type.triggers ?? []).map((t) => `${t} triggers`)];
  return uses.join(", ") || "nothing yet";
}

/** The first sentence of a type's description, without reST markup (for the form's hint). */
export function typeSummary(type: CredentialType): string {
  const text = String((type.schema as { description?: string }).description ?? "");
  return text.replace(/``/g, "").split(/\.\s|\n\n/)[0].replace(/\s+/g, " ").trim();
}

let cached: Promise<CredentialType[]> | null = null;

/** Every credential type, fetched once per page load. */
export function useCredentialTypes(): CredentialType[] | undefined {
  const [types, setTypes] = useState<CredentialType[]>();
  useEffect(() => {
    cached ??= api.GET("/credentials/types").then(unwrap);
    cached.then(setTypes, () => { cached = null; });
  }, []);
  return types;
}

/** A type's label by its `type`, or the `type` itself when it is unknown (or still loading). */
export function labelOf(types: CredentialType[] | undefined, type: string | null | undefined): string {
  return types?.find((t) => t.type === type)?.label ?? type ?? "";
}

/** A 422's problems by field: `data` fields under their name, `["body", "name"]` under
 * `name`, `["body", "type"]` under `type`; anything else under `""` (the whole form). */
export function problemsByField(error: unknown): Map<string, string[]> {
  const found = new Map<string, string[]>();
  if (!(error instanceof ApiFailure) || error.status !== 422) return found;
  const details = Array.isArray(error.error.details) ? error.error.details : [];
  for (const detail of details as { loc?: (string | number)[]; message?: string }[]) {
    const loc = detail.loc ?? [];
    const field =
      loc[0] === "body" && loc[1] === "data" && loc.length > 2 ? String(loc[2])
      : loc[0] === "body" && (loc[1] === "name" || loc[1] === "type") && loc.length === 2 ? String(loc[1])
      : "";
    found.set(field, [...(found.get(field) ?? []), detail.message ?? "invalid"]);
  }
  return found;
}

/** The Connections page with its add form set to a workflow's missing connection: its name and
 * the first type its nodes accept. */
export function addLink(need: CredentialNeed): string {
  return `/ui/connections?${new URLSearchParams({ name: need.name, type: need.types[0] ?? "" })}`;
}
