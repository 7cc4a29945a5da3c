// The API client: typed from the generated OpenAPI schema, credentials added by the auth module.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Run = Schemas["RunOut"];
export type RunNode = Schemas["NodeStateOut"];
export type LogRow = Schemas["LogRowOut"];
export type Workflow = Schemas["WorkflowOut"];
export type Draft = Schemas["DraftOut"];
export type DryRun = Schemas["DryRunOut"];
export type Session = Schemas["SessionOut"];
export type SessionSummary = Schemas["SessionSummaryOut"];
export type RunStatus = Run["status"];
export type WorkflowSummary = Schemas["WorkflowSummaryOut"];
export type RunSummary = Schemas["RunSummaryOut"];
export type PublicConfig = Schemas["PublicConfigOut"];
export type Me = Schemas["MeOut"];
export type Credential = Schemas["CredentialOut"];
export type CredentialType = Schemas["CredentialTypeOut"];
export type CredentialNeed = Schemas["CredentialNeedOut"];
export type Hook = Schemas["HookOut"];
export type HookUrl = Schemas["HookUrlOut"];

/** Supplies the headers that say who the caller is (none in local mode). */
let credentials: () => Promise<Record<string, string>> = async () => ({});

export function setCredentials(source: () => Promise<Record<string, string>>): void {
  credentials = source;
}

export async function authHeaders(): Promise<Record<string, string>> {
  return credentials();
}

const withCredentials: Middleware = {
  async onRequest({ request }) {
    for (const [name, value] of Object.entries(await credentials())) {
      request.headers.set(name, value);
    }
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(withCredentials);

/** The API's error body: `{"error": {"code", "message", "details"?}}`. */
export interface ApiError {
  code: string;
  message: string;
  details?: unknown;
}

/** A failed call, with the API's error code and message. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly error: ApiError,
  ) {
    super(`${error.message} (${error.code})`);
  }
}

/** The data of an openapi-fetch result, or throw its error as an ApiFailure. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || result.data === undefined) {
    const body = result.error as { error?: ApiError } | undefined;
    throw new ApiFailure(
      result.response.status,
      body?.error ?? { code: `http_${result.response.status}`, message: result.response.statusText },
    );
  }
  return result.data;
}

/** GET a path whose answer the API types only as a JSON object (e.g. GET /tools). */
export async function getJson<T>(path: string): Promise<T> {
  const response = await fetch(path, { headers: await credentials() });
  const body = await response.json().catch(() => undefined);
  if (!response.ok) {
    throw new ApiFailure(
      response.status,
      body?.error ?? { code: `http_${response.status}`, message: response.statusText },
    );
  }
  return body as T;
}
