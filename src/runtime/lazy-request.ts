/**
 * The `Request` a fetch handler receives, made only when the function looks past its method
 * and URL. Building undici's `Request` (URL parsing, a `Headers` filled pair by pair, the
 * body's stream) is the largest per-request cost of the runtime shim, and a handler that
 * answers without reading its request (a health check, a redirect, most routers before the
 * route's handler) never needed it.
 *
 * The object is `instanceof Request`: its prototype inherits from `Request.prototype`, with
 * `method` and `url` answered from the frame, and every other member forwarded to the real
 * `Request`, made on first use. Handing it to `new Request(request)` or `fetch(request)`
 * works: {@link installLazyRequestSupport} lets the global `Request` constructor and `fetch`
 * take the real one in its place (undici's own checks read private fields it does not have).
 * It holds no own properties (its state sits in a WeakMap), so `JSON.stringify`, spreading
 * and `Object.keys` see what they see of a real `Request`.
 */

/**
 * undici's `Request`, read on first use, not at import: the global is a lazy getter that
 * loads undici (tens of ms), which a fresh runtime must not pay before it says READY.
 */
let NativeRequest: typeof Request;
/** The prototype of lazy requests (made with {@link NativeRequest}). */
let proto: object | undefined;

/** What a lazy request is made from. */
interface Pending {
  url: string;
  method: string;
  headers: [string, string][];
  body: Uint8Array | undefined;
  real: Request | undefined;
}

const pending = new WeakMap<object, Pending>();

/** Methods undici keeps as they are. */
const SAFE_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
/**
 * URLs undici's parser returns unchanged: `http://`, a lower-case host name (its last label
 * starting with a letter) or a canonical IPv4 address (`127.1` would be rewritten), a port
 * other than 80, a path (and query) of characters it leaves as they are.
 */
const IPV4 =
  "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const NAME = "(?:[a-z0-9-]+\\.)*[a-z][a-z0-9-]*";
const PORT =
  "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})(?![0-9])";
const SAFE_URL = new RegExp(
  `^http://(?:${IPV4}|${NAME})(?::(?!80(?![0-9]))${PORT})?/[A-Za-z0-9\\-._~!$&()*+,;=:@%/?]*$`,
);

function pendingOf(self: object): Pending {
  const p = pending.get(self);
  if (!p) throw new TypeError("Illegal invocation");
  return p;
}

function realOf(self: object): Request {
  const p = pendingOf(self);
  if (!p.real) {
    const init: RequestInit = { method: p.method, headers: p.headers };
    if (p.body) init.body = p.body as unknown as BodyInit;
    p.real = new NativeRequest(p.url, init);
  }
  return p.real;
}

/** Reads undici's `Request` and builds the lazy prototype from it (once). */
function lazyProto(): object {
  if (proto) return proto;
  NativeRequest = globalThis.Request;
  const p: object = Object.create(NativeRequest.prototype);
  for (const key of Reflect.ownKeys(NativeRequest.prototype)) {
    if (key === "constructor" || key === Symbol.toStringTag) continue;
    const d = Object.getOwnPropertyDescriptor(NativeRequest.prototype, key);
    if (!d) continue;
    if (typeof d.value === "function") {
      const fn = d.value as (...a: unknown[]) => unknown;
      Object.defineProperty(p, key, {
        configurable: true,
        writable: true,
        value: function (this: object, ...args: unknown[]) {
          return fn.apply(realOf(this), args);
        },
      });
    } else if (d.get) {
      const get = d.get;
      Object.defineProperty(p, key, {
        configurable: true,
        get(this: object) {
          return get.call(realOf(this));
        },
      });
    }
  }
  Object.defineProperties(p, {
    method: {
      configurable: true,
      get(this: object) {
        const q = pendingOf(this);
        return q.real ? q.real.method : q.method;
      },
    },
    url: {
      configurable: true,
      get(this: object) {
        const q = pendingOf(this);
        // The real Request normalises the URL (e.g. percent-encodes): once made, it answers.
        return q.real ? q.real.url : q.url;
      },
    },
  });
  proto = p;
  return p;
}

/**
 * A `Request` for a fetch handler, made lazily. `url` must be one the real `Request` accepts
 * unchanged (the platform builds it: `http://host/path?query`), so that the fast `url` answer
 * equals the real one.
 */
export function lazyRequest(
  url: string,
  method: string,
  headers: [string, string][],
  body: Uint8Array | undefined,
): Request {
  const p = lazyProto();
  // Anything the real Request would normalise (a default port, dot segments, characters it
  // percent-encodes, an IPv6 host, a method's case) or refuse (TRACE) is made at once, so
  // that what the function sees is always what undici says.
  if (!SAFE_METHODS.has(method) || !SAFE_URL.test(url) || url.includes("/.") || /%2e/i.test(url)) {
    return eagerRequest(url, method, headers, body);
  }
  const r = Object.create(p) as Request;
  pending.set(r, { url, method, headers, body, real: undefined });
  return r;
}

/** undici's `Request`, made now (where a lazy one cannot be handed out). */
export function eagerRequest(
  url: string,
  method: string,
  headers: [string, string][],
  body: Uint8Array | undefined,
): Request {
  const init: RequestInit = { method, headers };
  if (body) init.body = body as unknown as BodyInit;
  return new (NativeRequest ?? globalThis.Request)(url, init);
}

/** The real `Request` behind a lazy one (made now), or the value itself. */
export function unwrapRequest<T>(input: T): T | Request {
  return typeof input === "object" && input !== null && pending.has(input) ? realOf(input) : input;
}

/**
 * Whether undici (the module behind the global `Request`, `Response`, `Headers`, `FormData`)
 * is loaded in this process. Node loads it on the first read of any of those globals, so
 * code that has not loaded it cannot hold a reference to the original `Request`. Where Node
 * does not say, it counts as loaded (the safe answer).
 */
export function webClassesLoaded(): boolean {
  const list = (process as { moduleLoadList?: string[] }).moduleLoadList;
  return !Array.isArray(list) || list.some((m) => m.endsWith("/undici/undici"));
}

let fetchInstalled = false;
let requestInstalled = false;

/**
 * Lets the global `fetch` take a lazy request (`fetch(request)`). Free (Node's `fetch` loads
 * undici only when called); call before the function's module loads (it may keep `fetch`).
 */
export function installLazyFetch(): void {
  if (fetchInstalled) return;
  fetchInstalled = true;
  const g = globalThis as { fetch: typeof fetch };
  g.fetch = new Proxy(g.fetch, {
    apply(target, thisArg, args: unknown[]) {
      if (args.length > 0) args[0] = unwrapRequest(args[0]);
      return Reflect.apply(target, thisArg, args) as Promise<Response>;
    },
  });
}

/**
 * Lets the global `Request` constructor take a lazy request (`new Request(request, init)`,
 * subclasses too). Reads the global, which loads undici (~100 ms of CPU in a fresh
 * process): call it where undici is loaded already, or where it is needed anyway. Code that
 * kept the original constructor before this call would not accept lazy requests: hand them
 * out only after it (the shim checks {@link webClassesLoaded}).
 */
export function installLazyRequests(): void {
  if (requestInstalled) return;
  requestInstalled = true;
  lazyProto();
  const g = globalThis as { Request: typeof Request };
  g.Request = new Proxy(NativeRequest, {
    construct(target, args: unknown[], newTarget) {
      if (args.length > 0) args[0] = unwrapRequest(args[0]);
      return Reflect.construct(target, args, newTarget) as object;
    },
  });
}

/** Both {@link installLazyFetch} and {@link installLazyRequests}. Idempotent. */
export function installLazyRequestSupport(): void {
  installLazyFetch();
  installLazyRequests();
}
