/**
 * The HTTP data plane: `/fn/<name>[@<version>]/<path>` → invoker. No framework on this
 * path: parse, check limits and auth, buffer the (bounded) body, stream the response.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Auth } from "../api/auth.ts";
import { FUNCTION_NAME } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { InvokeRequest, Invoker, Responder } from "../invoker/invoker.ts";
import type { VersionRecord } from "../store/types.ts";
import { Admission } from "./admission.ts";
import { DrainWriter } from "./drain.ts";

/** Largest synchronous request body, bytes (as Lambda's 6 MB). */
export const MAX_BODY = 6 * 1024 * 1024;

const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"]);
const EMPTY = Buffer.alloc(0);

/** Writes a catalogued error as JSON. */
export function sendError(res: ServerResponse, err: NimbusError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(err.toBody());
  res.writeHead(err.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    ...err.headers,
  });
  res.end(body);
}

/** Responders whose head waits for the end of this tick (one `nextTick` for all of them). */
let heldHeads: HttpResponder[] = [];

function flushHeldHeads(): void {
  const list = heldHeads;
  heldHeads = [];
  for (const r of list) r.flushHead();
}

/**
 * A responder that writes to an HTTP response. Frames that arrive together (head, body,
 * end) become one `res.end(body)` with a content-length; a body still streaming goes out
 * chunk by chunk (chunked encoding) as it is produced.
 *
 * Per request it allocates only itself: the head waits in a shared list flushed once per
 * tick, the drain bookkeeping is made only when a body streams past a full socket buffer,
 * and one `close` listener serves both the abort hook and the drain.
 */
export class HttpResponder implements Responder {
  private readonly res: ServerResponse;
  private readonly isHead: boolean;
  private status = 0;
  private headers: [string, string][] = [];
  private chunks: Buffer[] = [];
  /** `consumed` callbacks of the chunks buffered before the head went out. */
  private early: (() => void)[] = [];
  private drainWriter: DrainWriter | undefined;
  private pending = false;
  private started = false;
  private ended = false;

  constructor(res: ServerResponse, isHead: boolean) {
    this.res = res;
    this.isHead = isHead;
  }

  /** Made on first need: most responses never wait for a drain. */
  private get drain(): DrainWriter {
    this.drainWriter ??= new DrainWriter(this.res);
    return this.drainWriter;
  }

  head(status: number, headers: [string, string][]): void {
    this.status = status;
    this.headers = headers;
    this.pending = true;
    if (heldHeads.length === 0) process.nextTick(flushHeldHeads);
    heldHeads.push(this);
  }

  private rawHeaders(extra?: string): string[] {
    const flat: string[] = [];
    for (const [k, v] of this.headers) {
      if (HOP_BY_HOP.has(k)) continue;
      flat.push(k, v);
    }
    if (extra !== undefined) flat.push("content-length", extra);
    return flat;
  }

  /**
   * The frame guard already checked what the instance said; should `http.ServerResponse`
   * still refuse a write, the response is cut — never a throw out of the handler (which
   * would stop the server).
   */
  private refused(): void {
    this.ended = true;
    this.chunks = [];
    try {
      sendError(this.res, new NimbusError("NIMBUS_BAD_RESPONSE"));
    } catch {
      this.res.destroy();
    }
  }

  /** Sends a head that is still held (its body streams on). */
  flushHead(): void {
    if (!this.pending || this.ended) return;
    this.pending = false;
    this.started = true;
    try {
      this.res.writeHead(this.status, this.rawHeaders());
      for (const c of this.chunks) this.res.write(c);
      this.chunks = [];
    } catch {
      this.refused();
    }
    this.releaseEarly();
  }

  /** The buffered chunks were handed to the response: credit them once it drains. */
  private releaseEarly(): void {
    const early = this.early;
    if (early.length === 0) return;
    this.early = [];
    // Credit at once unless the response's buffer is full (then at its drain).
    if (this.res.writableNeedDrain && !this.res.destroyed) for (const cb of early) this.drain.after(cb);
    else for (const cb of early) cb();
  }

  chunk(data: Buffer, consumed: () => void): void {
    if (this.ended) return;
    if (this.started) {
      try {
        this.drain.write(data, consumed);
      } catch {
        this.refused();
      }
    } else {
      // Held at most until the next tick (the head's flush); bounded by the flow window.
      this.chunks.push(data);
      this.early.push(consumed);
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.started) {
      try {
        this.res.end();
      } catch {
        this.refused();
      }
      return;
    }
    this.pending = false;
    const chunks = this.chunks;
    const body = chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? EMPTY : Buffer.concat(chunks);
    this.chunks = [];
    // Nothing is written yet, so the buffered chunks are credited at once.
    this.releaseEarly();
    try {
      this.res.writeHead(this.status, this.rawHeaders(String(body.length)));
      this.res.end(this.isHead ? undefined : body);
    } catch {
      this.refused();
    }
  }

  onAbort(cb: () => void): void {
    this.res.once("close", () => {
      if (!this.ended && !this.res.writableFinished) cb();
    });
  }

  error(err: NimbusError): void {
    if (this.ended) return;
    this.ended = true;
    this.chunks = [];
    this.releaseEarly();
    if (this.started) {
      // The status line is gone: cut the response so the client sees it is incomplete.
      this.res.destroy();
      return;
    }
    sendError(this.res, err);
  }
}

/** Bytes of a refused body we read and drop so the client can read the 413; past this we cut. */
const DISCARD_LIMIT = 64 * 1024 * 1024;

/** Reads and drops the rest of a refused body (never buffered), cutting the connection past a cap. */
export function discard(req: IncomingMessage): void {
  let dropped = 0;
  req.on("data", (c: Buffer) => {
    dropped += c.length;
    if (dropped > DISCARD_LIMIT) req.socket.destroy();
  });
  req.resume();
}

/**
 * Reads a request body up to `limit` bytes; rejects with 413 past it without buffering more.
 * With `budget`, every byte held counts against the server-wide cap (503 past it); the
 * caller releases `body.length` once the body has been handed on.
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY, budget?: Admission): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(
      new NimbusError(
        "NIMBUS_PAYLOAD_TOO_LARGE",
        `The request body is ${declared} bytes; the limit is ${limit} bytes (6 MB). Send large payloads by reference (e.g. a URL).`,
      ),
    );
  }
  if (declared === "0" || (declared === undefined && req.headers["transfer-encoding"] === undefined)) {
    return Promise.resolve(EMPTY);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const refuse = (err: NimbusError): void => {
      settled = true;
      budget?.release(size);
      chunks.length = 0;
      req.removeAllListeners("data");
      discard(req);
      reject(err);
    };
    req.on("data", (c: Buffer) => {
      if (settled) return;
      if (size + c.length > limit) {
        refuse(
          new NimbusError(
            "NIMBUS_PAYLOAD_TOO_LARGE",
            `The request body exceeds the limit of ${limit} bytes (6 MB). Send large payloads by reference (e.g. a URL).`,
          ),
        );
        return;
      }
      if (budget && !budget.reserve(c.length)) {
        refuse(budget.overloaded(`${budget.maxBufferedBodyBytes} bytes of request bodies held in memory`));
        return;
      }
      size += c.length;
      chunks.push(c);
    });
    req.on("end", () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      budget?.release(size);
      reject(err);
    };
    req.on("error", fail);
    // A caller that goes away mid-body frees what it had sent.
    // (Checked first: "close" follows every request, and an error's stack costs ~0.1 ms.)
    req.on("close", () => {
      if (!settled) fail(new NimbusError("NIMBUS_BAD_REQUEST", "The request body was cut off."));
    });
  });
}

/** Splits `/fn/<name>[@<version>]<rest>`; throws 400/404 on malformed input. */
export function parseFunctionPath(url: string): { name: string; version?: number; path: string } {
  // url starts with "/fn/"
  const rest = url.slice(4);
  let end = rest.length;
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */) {
      end = i;
      break;
    }
  }
  let target: string;
  try {
    target = decodeURIComponent(rest.slice(0, end));
  } catch {
    // Malformed percent-encoding, or bytes that are not UTF-8 (e.g. /fn/%ZZ, /fn/%C3%28).
    throw new NimbusError(
      "NIMBUS_BAD_FUNCTION_NAME",
      `The function name in the URL is not valid percent-encoded UTF-8: ${JSON.stringify(rest.slice(0, Math.min(end, 80)))}. Names must match ^[a-z][a-z0-9-]{0,62}$.`,
    );
  }
  let path = rest.slice(end);
  if (path === "" || path[0] === "?") path = `/${path}`;
  const at = target.indexOf("@");
  const name = at < 0 ? target : target.slice(0, at);
  if (!FUNCTION_NAME.test(name)) {
    throw new NimbusError(
      "NIMBUS_BAD_FUNCTION_NAME",
      `Invalid function name ${JSON.stringify(name)} in the URL: names must match ^[a-z][a-z0-9-]{0,62}$.`,
    );
  }
  if (at < 0) return { name, path };
  const selector = target.slice(at + 1);
  if (selector === "latest") return { name, path };
  if (!/^[1-9][0-9]{0,8}$/.test(selector)) {
    throw new NimbusError(
      "NIMBUS_BAD_REQUEST",
      `Invalid version selector '@${selector}': use a version number (e.g. /fn/${name}@3/) or @latest.`,
    );
  }
  return { name, version: Number(selector), path };
}

/** The gateway. */
export class Gateway {
  private readonly invoker: Invoker;
  private readonly auth: Auth;
  private readonly tenant: string;
  private readonly admission: Admission;
  /** Told of each request refused before an invocation (metrics), with its catalogued code. */
  onRefused: ((code: string) => void) | undefined;
  /** Takes async calls (`x-nimbus-invocation-type: event`), when events are on. */
  asyncCalls?: {
    is: (headers: [string, string][]) => boolean;
    accept: (req: InvokeRequest, v: VersionRecord, res: ServerResponse) => Promise<void>;
  };

  constructor(invoker: Invoker, auth: Auth, tenant = "default", admission = new Admission()) {
    this.invoker = invoker;
    this.auth = auth;
    this.tenant = tenant;
    this.admission = admission;
  }

  /** Handles one `/fn/...` request. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.admission.refused(req.socket)) return;
    let target: ReturnType<typeof parseFunctionPath>;
    let v: VersionRecord;
    try {
      target = parseFunctionPath(req.url ?? "/fn/");
      v = this.invoker.resolve(this.tenant, target.name, target.version);
    } catch (err) {
      // Drop (never buffer) the body of a refused request.
      discard(req);
      this.fail(res, err);
      return;
    }
    // The common case, a public function called without a body, goes on in this turn: no
    // promise to wait for, no body budget to take and give back.
    const declared = req.headers["content-length"];
    const bodyless =
      declared === "0" || (declared === undefined && req.headers["transfer-encoding"] === undefined);
    const p =
      v.config.auth !== "key" && bodyless
        ? this.dispatch(req, res, target, v, EMPTY)
        : this.run(req, res, target, v);
    p.catch((err: unknown) => this.fail(res, err));
  }

  private fail(res: ServerResponse, err: unknown): void {
    const e =
      err instanceof NimbusError ? err : new NimbusError("NIMBUS_INTERNAL", undefined, { cause: err });
    this.onRefused?.(e.code);
    sendError(res, e);
  }

  /** A request that needs auth, or has a body to read within the caps. */
  private async run(
    req: IncomingMessage,
    res: ServerResponse,
    target: ReturnType<typeof parseFunctionPath>,
    v: VersionRecord,
  ): Promise<void> {
    try {
      if (v.config.auth === "key") await this.auth.require(req.headers.authorization, "invoke");
    } catch (err) {
      discard(req);
      throw err;
    }
    let body: Buffer;
    try {
      body = await readBody(req, MAX_BODY, this.admission);
    } catch (err) {
      if (err instanceof NimbusError && err.code === "NIMBUS_OVERLOADED") {
        // Refused for the server's sake: the rest of the body is not read.
        res.shouldKeepAlive = false;
        res.once("finish", () => req.socket.destroy());
        throw err;
      }
      // Read and drop the rest of a refused body so the client gets the 413 (a client still
      // writing would see a reset otherwise); a huge declared body is cut off instead.
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared > DISCARD_LIMIT) {
        res.shouldKeepAlive = false;
        res.once("finish", () => req.socket.destroy());
      } else discard(req);
      throw err;
    }
    try {
      await this.dispatch(req, res, target, v, body);
    } finally {
      // The body went to the instance or the queue (or the request failed): no longer held here.
      this.admission.release(body.length);
    }
  }

  /** Hands a request (its body read) to the invoker, or to the async queue. */
  private dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    target: ReturnType<typeof parseFunctionPath>,
    v: VersionRecord,
    body: Buffer,
  ): Promise<void> {
    const raw = req.rawHeaders;
    const headers: [string, string][] = [];
    const dropAuth = v.config.auth === "key";
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toLowerCase();
      if (dropAuth && k === "authorization") continue;
      headers.push([k, raw[i + 1]!]);
    }
    const call: InvokeRequest = {
      tenant: this.tenant,
      name: target.name,
      version: target.version,
      method: req.method ?? "GET",
      path: target.path,
      host: req.headers.host ?? "localhost",
      headers,
      body,
      sourceIp: req.socket.remoteAddress ?? "",
      trigger: "http",
    };
    if (this.asyncCalls?.is(headers)) return this.asyncCalls.accept(call, v, res);
    return this.invoker.invoke(call, v, new HttpResponder(res, req.method === "HEAD"));
  }
}
