/**
 * Async calls through a function's URL: `POST /fn/<name>` with `x-nimbus-invocation-type:
 * event` (or Lambda's `X-Amz-Invocation-Type: Event`) stores the same request a synchronous
 * call would deliver and answers 202 with the invocation id once it is durable.
 */
import type { ServerResponse } from "node:http";
import type { InvokeRequest } from "../invoker/invoker.ts";
import type { VersionRecord } from "../store/types.ts";
import type { AsyncInvocations } from "./async.ts";

/** Header naming the invocation id (as on every sync response). */
export const INVOCATION_ID_HEADER = "x-nimbus-invocation-id";

const TYPE_HEADERS = new Set(["x-nimbus-invocation-type", "x-amz-invocation-type"]);

/** Whether request headers ask for an async (event) invocation. */
export function isAsyncCall(headers: [string, string][]): boolean {
  for (const [k, v] of headers) if (TYPE_HEADERS.has(k) && v.trim().toLowerCase() === "event") return true;
  return false;
}

/** Stores an async call made through the function URL and answers 202. */
export async function acceptAsyncHttp(
  svc: AsyncInvocations,
  req: InvokeRequest,
  v: VersionRecord,
  res: ServerResponse,
): Promise<void> {
  let key: string | undefined;
  const headers: [string, string][] = [];
  for (const h of req.headers) {
    if (TYPE_HEADERS.has(h[0])) continue;
    if (h[0] === "idempotency-key") key = h[1];
    headers.push(h);
  }
  const r = await svc.submit(
    v,
    {
      tenant: req.tenant,
      fn: req.name,
      version: req.version,
      kind: "http",
      method: req.method,
      path: req.path,
      host: req.host,
      headers,
      sourceIp: req.sourceIp,
      trigger: "async",
    },
    req.body,
    key,
  );
  const body = JSON.stringify({ invocationId: r.id, duplicate: r.duplicate });
  res.writeHead(202, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    [INVOCATION_ID_HEADER]: r.id,
  });
  res.end(body);
}
