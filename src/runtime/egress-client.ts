/**
 * The instance side of the egress proxy (see src/executors/egress/proxy.ts): an instance's
 * network namespace has only its own loopback, so every outbound TCP connection is asked of
 * the platform over a unix socket. One JSON line each way per control connection:
 *
 * - `{"op":"open","host","port","policy"?}` → `{"ok":true,"path"}`: the platform resolved
 *   the name, checked every address against the policy, connected, and listens on `path`
 *   (a one-shot unix socket) for the instance's end of the pipe;
 * - `{"op":"resolve","host","family"?,"policy"?}` → `{"ok":true,"addresses":[{address,family}]}`
 *   (only addresses the policy allows);
 * - any failure → `{"ok":false,"error"}`.
 *
 * `policy` (a function's own network policy) can only narrow what the platform allows.
 */
import { Socket } from "node:net";

/** A network policy as the egress proxy takes it (the same shape as a function's `network`). */
export interface EgressRequestPolicy {
  default: "allow" | "deny";
  allow?: string[];
  deny?: string[];
  allowPrivate?: boolean;
}

/** A refused or failed egress request (`code` ENIMBUSEGRESS). */
export class EgressError extends Error {
  readonly code = "ENIMBUSEGRESS";
  constructor(message: string) {
    super(message);
    this.name = "EgressError";
  }
}

const MAX_REPLY = 64 * 1024;

/** Sends one request on a fresh control connection and reads the one-line answer. */
function request(ctl: string, req: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = new Socket();
    let buf = "";
    let done = false;
    const finish = (err: Error | null, v?: Record<string, unknown>): void => {
      if (done) return;
      done = true;
      s.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) {
        if (buf.length > MAX_REPLY) finish(new EgressError("egress proxy: reply too long"));
        return;
      }
      try {
        finish(null, JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        finish(new EgressError("egress proxy: malformed reply"));
      }
    });
    s.on("error", (e) => finish(new EgressError(`egress proxy unreachable: ${e.message}`)));
    s.on("close", () => finish(new EgressError("egress proxy closed the connection")));
    s.connect({ path: ctl }, () => s.write(`${JSON.stringify(req)}\n`));
  });
}

/**
 * Asks the platform to connect to `host:port`; resolves to the unix socket path to connect
 * to for the pipe. Rejects with an {@link EgressError} saying why when refused.
 */
export async function egressOpen(
  ctl: string,
  host: string,
  port: number,
  policy?: EgressRequestPolicy,
): Promise<string> {
  const r = await request(ctl, { op: "open", host, port, policy });
  if (r.ok !== true || typeof r.path !== "string") {
    throw new EgressError(String(r.error ?? "egress refused"));
  }
  return r.path;
}

/** Resolves `host` through the platform; only addresses the policy allows come back. */
export async function egressResolve(
  ctl: string,
  host: string,
  family = 0,
  policy?: EgressRequestPolicy,
): Promise<{ address: string; family: number }[]> {
  const r = await request(ctl, { op: "resolve", host, family, policy });
  if (r.ok !== true || !Array.isArray(r.addresses)) {
    const e = new EgressError(String(r.error ?? "egress refused"));
    throw e;
  }
  return (r.addresses as { address: unknown; family: unknown }[])
    .filter((a) => typeof a.address === "string" && (a.family === 4 || a.family === 6))
    .map((a) => ({ address: a.address as string, family: a.family as number }));
}
