// A webhook trigger's hook (POST /hooks/{workflow_id}/{token}) as the workflow page explains it:
// the trigger that governs it, a sample body built from what the blueprint reads of
// `trigger_data.body`, and a curl command that posts that body (signed when the hook is).
import type { Blueprint, BlueprintNode } from "./graph/blueprint";

/** Where a signed hook looks for the signature unless the trigger names another header. */
export const DEFAULT_SIGNATURE_HEADER = "X-Signature-256";

/** What a sample body's fields hold: the blueprint says which fields it reads, not their values. */
export const SAMPLE_VALUE = "example";

/** At most this many `trigger_data.body` references shape a sample body (a hostile blueprint
 * cannot make the page build a huge one). */
const MAX_REFERENCES = 50;
/** At most this deep a sample body's fields nest. */
const MAX_DEPTH = 6;

/** The blueprint's webhook trigger (its top-level trigger when that is a webhook one). */
export function webhookTrigger(blueprint: Blueprint): BlueprintNode | undefined {
  return blueprint.nodes.find((n) => n.type === "trigger" && n.trigger === "webhook");
}

/** The header a signed hook checks: the trigger's `signature_header`, else the default. */
export function signatureHeader(trigger: BlueprintNode | undefined): string {
  const header = trigger?.signature_header;
  return typeof header === "string" && header ? header : DEFAULT_SIGNATURE_HEADER;
}

type Segment = string | number;

/** `trigger_data.body` followed by `.name`, `['name']`, `["name"]` or `[0]` steps. */
const REFERENCE = /trigger_data\.body((?:\.[A-Za-z_]\w*|\[\s*(?:'[^'\n]*'|"[^"\n]*"|\d+)\s*\])*)/g;
const STEP = /\.([A-Za-z_]\w*)|\[\s*(?:'([^'\n]*)'|"([^"\n]*)"|(\d+))\s*\]/g;

/** The field paths a text reads from the request body (`trigger_data.body.order.id` →
 * `["order", "id"]`; `trigger_data.body.items[0]` → `["items", 0]`). */
export function bodyReferences(text: string): Segment[][] {
  const found: Segment[][] = [];
  for (const match of text.matchAll(REFERENCE)) {
    const path: Segment[] = [];
    for (const step of match[1].matchAll(STEP)) {
      path.push(step[4] !== undefined ? Number(step[4]) : (step[1] ?? step[2] ?? step[3]));
    }
    found.push(path.slice(0, MAX_DEPTH));
  }
  return found;
}

/** Every string in a JSON value (a blueprint's params, conditions, outputs), bounded. */
function strings(value: unknown, out: string[] = [], depth = 0): string[] {
  if (typeof value === "string") out.push(value);
  else if (depth < 64 && Array.isArray(value)) for (const item of value) strings(item, out, depth + 1);
  else if (depth < 64 && value && typeof value === "object") for (const item of Object.values(value)) strings(item, out, depth + 1);
  return out;
}

/** ``shape`` with a sample value at ``path`` (objects and one-item lists made on the way; what
 * is there already is kept, a placeholder turned into an object when a field is read from it). */
function place(shape: unknown, path: Segment[]): unknown {
  if (path.length === 0) return shape === undefined ? SAMPLE_VALUE : shape;
  const [head, ...rest] = path;
  if (typeof head === "number") return [place(Array.isArray(shape) ? shape[0] : undefined, rest)];
  const fields = shape && typeof shape === "object" && !Array.isArray(shape) ? (shape as Record<string, unknown>) : {};
  return { ...fields, [head]: place(Object.hasOwn(fields, head) ? fields[head] : undefined, rest) };
}

/** A JSON body with every field the blueprint reads from `trigger_data.body` (each holding
 * {@link SAMPLE_VALUE}); `{}` when it reads none, or reads the body whole. */
export function sampleBody(blueprint: Blueprint): unknown {
  const paths = strings(blueprint.nodes).flatMap(bodyReferences).slice(0, MAX_REFERENCES);
  let body: unknown = {};
  for (const path of paths) {
    if (path.length > 0) body = place(body, path);
  }
  return body;
}

/** ``text`` as one single-quoted shell word. */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export interface CurlOptions {
  /** The full hook URL, when this page knows it (right after it was made or rotated). */
  url: string | null;
  /** The URL with the token's first characters (`…/hooks/<id>/AbCd…`). */
  urlHint: string;
  body: unknown;
  /** The hook checks an HMAC-SHA256 signature of the raw body. */
  signed: boolean;
  header: string;
  /** The `webhook_secret` connection holding the signing secret. */
  credential?: string | null;
}

/** A shell session that posts ``body`` as JSON to the hook: the URL (or, when unknown, a
 * placeholder saying where to find it), the body, and with ``signed`` its signature computed
 * with openssl in ``header`` — the way README "Webhook triggers" signs one. */
export function curlExample({ url, urlHint, body, signed, header, credential }: CurlOptions): string {
  const lines = [
    url
      ? `HOOK=${shellQuote(url)}`
      : `HOOK=${shellQuote(`<the full URL, shown once when made or rotated: ${urlHint}>`)}`,
    `BODY=${shellQuote(JSON.stringify(body))}`,
  ];
  if (signed) {
    const whose = credential ? `the secret of your connection ${credential}` : "your signing secret";
    lines.push(
      `HOOK_SECRET=${shellQuote(`<${whose}>`)}`,
      `SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$HOOK_SECRET" | sed 's/^.* //')`,
      `curl -s "$HOOK" -H 'content-type: application/json' \\`,
      `  -H "${header}: sha256=$SIG" --data-binary "$BODY"`,
    );
  } else {
    lines.push(`curl -s "$HOOK" -H 'content-type: application/json' --data-binary "$BODY"`);
  }
  return lines.join("\n");
}

/** The absolute base the API builds hook URLs on (`PUBLIC_BASE_URL`): ``urlHint`` without its
 * ``pathHint`` tail; null when the two do not line up. */
export function baseOf(urlHint: string, pathHint: string): string | null {
  return urlHint.endsWith(pathHint) ? urlHint.slice(0, urlHint.length - pathHint.length) : null;
}
