/**
 * Routes a process instance's outbound TCP through the platform's egress proxy. The
 * instance's network namespace has only its own loopback, so this is not the protection —
 * the kernel is: whatever bypasses this patch finds no route. It makes ordinary Node code
 * work for what the policy allows: `fetch` (undici), `net.connect`/`net.Socket#connect`,
 * `tls.connect`, `http(s).request` (which use them) and `dns.lookup` all go through the proxy,
 * which resolves names itself and checks every address at connect time.
 */
import net from "node:net";
import type * as TLS from "node:tls";
import { EgressError, egressOpen, egressResolve } from "./egress-client.ts";

type ConnectOptions = { host?: string; port?: number | string; path?: string } & Record<string, unknown>;

/** The options and callback of any `connect(...)` call shape Node accepts. */
function normalize(args: unknown[]): [ConnectOptions, ((...a: unknown[]) => void) | null] {
  const first = args[0] as unknown[] & { [k: symbol]: unknown };
  // Node passes already-normalised [options, cb] arrays internally.
  if (Array.isArray(first)) return [first[0] as ConnectOptions, (first[1] as never) ?? null];
  const cb = typeof args[args.length - 1] === "function" ? (args[args.length - 1] as never) : null;
  if (first !== null && typeof first === "object") return [{ ...(first as object) } as ConnectOptions, cb];
  if (typeof first === "string" && !/^\d+$/.test(first)) return [{ path: first }, cb];
  const o: ConnectOptions = { port: first as unknown as number };
  if (typeof args[1] === "string") o.host = args[1];
  return [o, cb];
}

/** Installs the patch; `ctl` is the proxy's control socket inside the sandbox. */
export function routeThroughEgressProxy(ctl: string): void {
  // Loaded here, not at the module's top: node:tls pulls in crypto (tens of ms of a fresh
  // runtime's start), and the shim installs this patch only when it loads a function.
  const tls = process.getBuiltinModule("node:tls");
  const dns = process.getBuiltinModule("node:dns");
  const { syncBuiltinESMExports } = process.getBuiltinModule("node:module");
  const origConnect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function connect(this: net.Socket, ...args: unknown[]): net.Socket {
    const [options, cb] = normalize(args);
    if (options.path != null || options.port === undefined || this instanceof tls.TLSSocket) {
      return origConnect.apply(this, args as never);
    }
    const host = String(options.host ?? "localhost");
    const port = Number(options.port);
    if (cb) this.once("connect", cb);
    // Writes wait for 'connect' while `connecting` is set, as during a DNS lookup.
    (this as unknown as { connecting: boolean }).connecting = true;
    egressOpen(ctl, host, port).then(
      (path) => {
        if (!this.destroyed) origConnect.call(this, { path } as never);
      },
      (err: Error) => {
        const e = err instanceof EgressError ? err : new EgressError(String(err));
        (e as unknown as { address: string; port: number }).address = host;
        (e as unknown as { address: string; port: number }).port = port;
        this.destroy(e);
      },
    );
    return this;
  } as typeof net.Socket.prototype.connect;

  // tls.connect without a socket would connect its own TCP handle: give it a proxied one.
  const origTls = tls.connect;
  const tlsConnect = (...args: unknown[]): TLS.TLSSocket => {
    const [options, cb] = normalize(args);
    if (options.socket || options.path != null) return origTls(...(args as [never]));
    const host = String(options.host ?? "localhost");
    const port = Number(options.port ?? 443);
    const raw = net.connect({ host, port });
    const servername = (options.servername as string | undefined) ?? (net.isIP(host) ? undefined : host);
    const o = { ...options, socket: raw, host, port, servername };
    return cb ? origTls(o as TLS.ConnectionOptions, cb) : origTls(o as TLS.ConnectionOptions);
  };
  tls.connect = tlsConnect as typeof tls.connect;

  const origLookup = dns.lookup;
  const lookup = (hostname: string, opts: unknown, cb?: unknown): void => {
    const callback = (typeof opts === "function" ? opts : cb) as (
      err: Error | null,
      address?: string | { address: string; family: number }[],
      family?: number,
    ) => void;
    const o = (typeof opts === "object" && opts !== null ? opts : { family: opts }) as {
      all?: boolean;
      family?: number | string;
    };
    const v = net.isIP(hostname);
    if (v) {
      // A literal address resolves to itself, as in Node; connecting to it is checked.
      origLookup(hostname, o as never, callback as never);
      return;
    }
    const family = o.family === "IPv4" ? 4 : o.family === "IPv6" ? 6 : Number(o.family) || 0;
    egressResolve(ctl, hostname, family).then(
      (addresses) => {
        if (o.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: Error) => {
        const e = err as NodeJS.ErrnoException;
        e.code = "ENOTFOUND";
        (e as unknown as { hostname: string }).hostname = hostname;
        callback(e);
      },
    );
  };
  dns.lookup = lookup as typeof dns.lookup;
  const lookupPromise = (hostname: string, opts?: unknown) =>
    new Promise((res, rej) =>
      lookup(hostname, opts ?? {}, (err: Error | null, address?: unknown, family?: number) => {
        if (err) rej(err);
        else res(Array.isArray(address) ? address : { address, family });
      }),
    );
  dns.promises.lookup = lookupPromise as typeof dns.promises.lookup;
  syncBuiltinESMExports();
}
