/**
 * CloudEvents 1.0 (https://github.com/cloudevents/spec): the envelope of destination
 * reports and trigger messages, and the HTTP binding's two modes (binary: attributes in
 * `ce-*` headers, data in the body; structured: the whole event as
 * `application/cloudevents+json`).
 */

/** A CloudEvent in its JSON form. */
export interface CloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  time?: string;
  subject?: string;
  datacontenttype?: string;
  /** JSON data (structured mode); binary data travels as `data_base64`. */
  data?: unknown;
  data_base64?: string;
  /** Extension attributes (lower-case alphanumeric names). */
  [extension: string]: unknown;
}

/** The attributes the spec requires. */
const REQUIRED = ["specversion", "id", "source", "type"] as const;

/** Content type of a structured-mode CloudEvent. */
export const STRUCTURED_TYPE = "application/cloudevents+json";

/** Whether request headers carry a binary-mode CloudEvent (all required `ce-*` headers). */
export function isBinaryMode(headers: [string, string][]): boolean {
  const names = new Set(headers.map(([k]) => k));
  return REQUIRED.every((a) => names.has(`ce-${a}`));
}

/** Whether a content type is structured-mode CloudEvents JSON. */
export function isStructuredMode(contentType: string | undefined): boolean {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase() === STRUCTURED_TYPE;
}

/** Validates a parsed structured-mode event; returns the reason it is not one, if any. */
export function checkCloudEvent(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "a CloudEvent must be a JSON object";
  const e = v as Record<string, unknown>;
  for (const a of REQUIRED) {
    if (typeof e[a] !== "string" || (e[a] as string).length === 0)
      return `attribute '${a}' is missing or empty`;
  }
  if (e.specversion !== "1.0") return `specversion '${String(e.specversion)}' is not supported (1.0 is)`;
  return undefined;
}

/**
 * The binary-mode HTTP form of an event: `ce-*` headers plus the data as the body
 * (JSON data serialised; `data_base64` decoded).
 */
export function toBinary(e: CloudEvent): { headers: [string, string][]; body: Buffer } {
  const headers: [string, string][] = [];
  for (const [k, v] of Object.entries(e)) {
    if (k === "data" || k === "data_base64" || k === "datacontenttype" || v === undefined) continue;
    headers.push([`ce-${k}`, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  let body: Buffer;
  if (e.data_base64 !== undefined) body = Buffer.from(e.data_base64, "base64");
  else if (e.data === undefined) body = Buffer.alloc(0);
  else if (typeof e.data === "string" && e.datacontenttype && !e.datacontenttype.includes("json"))
    body = Buffer.from(e.data);
  else body = Buffer.from(JSON.stringify(e.data));
  headers.push(["content-type", e.datacontenttype ?? "application/json"]);
  return { headers, body };
}
