/**
 * The egress proxy: the only way out of an instance's (or isolate host's) network namespace.
 * It listens on a unix socket bind-mounted into the sandbox, resolves names itself, checks
 * every resolved address against the policies at connect time (the server's ceiling, the
 * function's own, and any narrower one the caller asks for), connects, and pipes. A DNS
 * answer pointing inside is refused like a literal address; a redirect is a new connection,
 * checked again. Protocol: see src/runtime/egress-client.ts.
 */
import { randomBytes } from "node:crypto";
import { lookup as dnsLookup } from "node:dns/promises";
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { createServer, isIP, type Server, Socket } from "node:net";
import { join } from "node:path";
import { checkAll, Egress, type EgressPolicy } from "../../runtime/egress-policy.ts";

/** Resolves a name to addresses (injectable for tests). */
export type Lookup = (host: string, family: number) => Promise<{ address: string; family: number }[]>;

const systemLookup: Lookup = async (host, family) =>
  (await dnsLookup(host, { all: true, family: family === 4 || family === 6 ? family : 0 })).map((a) => ({
    address: a.address,
    family: a.family,
  }));

/** Options of one proxy. */
export interface EgressProxyOptions {
  /** Host directory for the control socket and the one-shot pipe sockets. */
  dir: string;
  /** The same directory as seen by the instance (paths in replies use it). */
  insideDir: string;
  /** The server's policy: the ceiling every connection is checked against. */
  ceiling: Egress;
  /** Receives one line per refused or failed connection (goes to the function's log). */
  log?: (msg: string) => void;
  /** Name resolution. @default the system resolver (dns.lookup: /etc/hosts, then DNS) */
  lookup?: Lookup;
  /** Connections (pending and piped) at once. @default 256 */
  maxConnections?: number;
  /** Time to connect upstream, and for the instance to take its pipe, ms. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * Told of each connection made upstream (traces: a span per egress connection); the
   * function it returns is called once when that connection closes.
   */
  onConnect?: (host: string, port: number, startMs: number) => (() => void) | undefined;
}

const MAX_REQUEST = 8 * 1024;
/** Requested (narrowing) policies compiled and kept, per proxy. */
const MAX_POLICIES = 32;

/** Validates an untrusted policy object; undefined when it is not one. */
function asPolicy(v: unknown): EgressPolicy | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.default !== "allow" && o.default !== "deny") return undefined;
  const list = (x: unknown): string[] | undefined | false => {
    if (x === undefined) return undefined;
    if (!Array.isArray(x) || x.length > 256) return false;
    if (x.some((r) => typeof r !== "string" || r.length === 0 || r.length > 253)) return false;
    return x as string[];
  };
  const allow = list(o.allow);
  const deny = list(o.deny);
  if (allow === false || deny === false) return undefined;
  if (o.allowPrivate !== undefined && typeof o.allowPrivate !== "boolean") return undefined;
  return { default: o.default, allow, deny, allowPrivate: o.allowPrivate as boolean | undefined };
}

/** One instance's egress proxy. */
export class EgressProxy {
  /** The control socket's path on the host. */
  readonly ctlPath: string;
  private readonly o: EgressProxyOptions;
  private readonly server: Server;
  private fnPolicy: Egress | undefined;
  private readonly requested = new Map<string, Egress>();
  private readonly open = new Set<Socket | Server>();
  private active = 0;
  private closed = false;

  constructor(o: EgressProxyOptions) {
    this.o = o;
    mkdirSync(o.dir, { recursive: true, mode: 0o711 });
    this.ctlPath = join(o.dir, "ctl.sock");
    this.server = createServer((c) => this.onControl(c));
    this.server.on("error", () => {});
  }

  /** Starts listening on the control socket. */
  async listen(): Promise<void> {
    await new Promise<void>((res, rej) => {
      this.server.once("error", rej);
      this.server.listen(this.ctlPath, () => res());
    });
    // The instance's uid is not ours: the socket must be connectable by anyone who can
    // reach it (only this instance's sandbox has the directory mounted).
    chmodSync(this.ctlPath, 0o666);
  }

  /** The function's own network policy (narrows the ceiling), once the instance has one. */
  setFunctionPolicy(policy: EgressPolicy | undefined): void {
    this.fnPolicy = policy ? new Egress(policy) : undefined;
  }

  private policies(requested: unknown): Egress[] | string {
    const list = [this.o.ceiling];
    if (this.fnPolicy) list.push(this.fnPolicy);
    if (requested !== undefined && requested !== null) {
      const p = asPolicy(requested);
      if (!p) return "the requested network policy is malformed";
      const key = JSON.stringify(p);
      let e = this.requested.get(key);
      if (!e) {
        if (this.requested.size >= MAX_POLICIES) this.requested.clear();
        e = new Egress(p);
        this.requested.set(key, e);
      }
      list.push(e);
    }
    return list;
  }

  private onControl(c: Socket): void {
    if (this.closed || this.active >= (this.o.maxConnections ?? 256)) {
      c.end(`${JSON.stringify({ ok: false, error: "too many connections at once" })}\n`);
      return;
    }
    this.active++;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        this.active--;
      }
    };
    let buf = "";
    c.setEncoding("utf8");
    c.setTimeout(this.o.connectTimeoutMs ?? 10_000, () => c.destroy());
    c.on("error", () => {});
    c.on("close", () => {
      // The request is still pending only if no pipe took over the slot.
      if (!handed) release();
    });
    let handed = false;
    const reply = (v: object): void => {
      if (!c.destroyed) c.end(`${JSON.stringify(v)}\n`);
    };
    const refuse = (error: string): void => {
      this.o.log?.(`nimbus egress: ${error}`);
      reply({ ok: false, error });
    };
    const onData = (d: string): void => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) {
        if (buf.length > MAX_REQUEST) c.destroy();
        return;
      }
      c.off("data", onData);
      let req: Record<string, unknown>;
      try {
        req = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      } catch {
        reply({ ok: false, error: "malformed request" });
        return;
      }
      const host = req.host;
      if (typeof host !== "string" || host.length === 0 || host.length > 253) {
        reply({ ok: false, error: "host must be a name or address" });
        return;
      }
      const policies = this.policies(req.policy);
      if (typeof policies === "string") {
        reply({ ok: false, error: policies });
        return;
      }
      if (req.op === "resolve") {
        void this.resolve(host, Number(req.family) || 0, policies).then(
          (addresses) => reply({ ok: true, addresses }),
          (err: Error) => refuse(err.message),
        );
      } else if (req.op === "open") {
        const port = req.port;
        if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
          reply({ ok: false, error: "port must be 1-65535" });
          return;
        }
        const startMs = Date.now();
        void this.connect(host, port, policies).then(
          (upstream) => {
            handed = true;
            const closed = this.o.onConnect?.(host, port, startMs);
            if (closed) upstream.once("close", closed);
            this.handOver(upstream, reply, release);
          },
          (err: Error) => refuse(err.message),
        );
      } else reply({ ok: false, error: "unknown op" });
    };
    c.on("data", onData);
  }

  /** The permitted addresses of `host` (a literal address is checked as is). */
  private async resolve(
    host: string,
    family: number,
    policies: Egress[],
  ): Promise<{ address: string; family: number }[]> {
    const bare = host.replace(/^\[|\]$/g, "");
    const v = isIP(bare);
    const all = v ? [{ address: bare, family: v }] : await (this.o.lookup ?? systemLookup)(bare, family);
    const ok: { address: string; family: number }[] = [];
    let reason = "";
    for (const a of all) {
      const why = checkAll(policies, bare, a.address);
      if (why) reason = why;
      else ok.push(a);
    }
    if (ok.length === 0) throw new Error(`connection to ${host} refused: ${reason || "no address"}`);
    return ok;
  }

  /** Connects to the first permitted address of `host` that answers. */
  private async connect(host: string, port: number, policies: Egress[]): Promise<Socket> {
    const addresses = await this.resolve(host, 0, policies);
    let last: Error | undefined;
    for (const a of addresses.slice(0, 4)) {
      try {
        return await new Promise<Socket>((res, rej) => {
          const s = new Socket();
          s.setTimeout(this.o.connectTimeoutMs ?? 10_000, () =>
            s.destroy(new Error(`connect to ${host}:${port} timed out`)),
          );
          s.once("error", rej);
          s.connect({ host: a.address, port }, () => {
            s.setTimeout(0);
            s.off("error", rej);
            res(s);
          });
        });
      } catch (err) {
        last = err as Error;
      }
    }
    throw new Error(`connect to ${host}:${port} failed: ${last?.message ?? "no address"}`);
  }

  /**
   * Listens on a one-shot unix socket for the instance's end of the pipe, tells the
   * instance its path, and pipes the first connection to `upstream`.
   */
  private handOver(upstream: Socket, reply: (v: object) => void, release: () => void): void {
    const name = `c-${randomBytes(12).toString("hex")}.sock`;
    const hostPath = join(this.o.dir, name);
    const once = createServer();
    this.open.add(once).add(upstream);
    upstream.on("error", () => {});
    const stopListening = (): void => {
      this.open.delete(once);
      once.close();
      rmSync(hostPath, { force: true });
    };
    const timer = setTimeout(() => {
      stopListening();
      upstream.destroy();
    }, this.o.connectTimeoutMs ?? 10_000);
    upstream.on("close", () => {
      clearTimeout(timer);
      this.open.delete(upstream);
      release();
    });
    once.on("error", () => upstream.destroy());
    once.on("connection", (down: Socket) => {
      clearTimeout(timer);
      stopListening();
      this.open.add(down);
      down.on("error", () => {});
      down.on("close", () => {
        this.open.delete(down);
        upstream.destroy();
      });
      upstream.on("close", () => down.destroy());
      // pipe() keeps backpressure both ways: a slow reader pauses the writer.
      down.pipe(upstream);
      upstream.pipe(down);
    });
    once.listen(hostPath, () => {
      chmodSync(hostPath, 0o666);
      reply({ ok: true, path: `${this.o.insideDir}/${name}` });
    });
  }

  /** Stops listening and cuts every connection. */
  close(): void {
    this.closed = true;
    this.server.close();
    for (const s of this.open) {
      if (s instanceof Socket) s.destroy();
      else s.close();
    }
    this.open.clear();
    rmSync(this.o.dir, { recursive: true, force: true });
  }
}
