/**
 * The one place where what an instance sends the platform is checked. Both executors read
 * their instance's channel through a {@link FrameGuard}: the process executor for each
 * runtime process, the isolate executor for each isolate host (a host is tenant-controlled
 * too: a function that escaped its isolate owns the host's end of the channel).
 *
 * A frame is checked in three steps, and the first failure is a *violation*:
 * 1. its length prefix and type, before a byte of its body is buffered (a per-type cap, so a
 *    15 MB "log line" is refused from its first 5 bytes);
 * 2. its meta against the type's {@link FrameRule} (types, ranges, allow-lists, cuts);
 * 3. for response frames, the order within the invocation (head, chunks, end, done).
 *
 * After a violation the guard drops everything else from that channel and calls
 * `onViolation` once; the executor stops the instance (catalogued NIMBUS_INSTANCE_PROTOCOL,
 * 502). Nothing the sender says can throw out of {@link FrameGuard.push}.
 *
 * Adding a frame type an instance may send: add a {@link FrameRule} to {@link INSTANCE_RULES}
 * (or to {@link ISOLATE_HOST_RULES} when only the isolate host sends it) with its byte cap and a
 * `check` that returns the cleaned meta or throws {@link FrameViolation}. A type without a rule
 * is a violation.
 */

import { type FetchSpanMeta, TI } from "../runtime/isolate/frames.ts";
import { copyOut, cutLogLine, type Frame, MAX_CHUNK, MAX_LOG_LINE, T } from "../runtime/protocol.ts";
import { QUEUE_LIMITS, type QueueSendMeta } from "../runtime/queue-send.ts";

/** Thrown by a rule's `check` (or the decoder) when a frame breaks the protocol. */
export class FrameViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameViolation";
  }
}

/** How one frame type an instance may send is checked. */
export interface FrameRule {
  /** Largest frame of this type, bytes (the length prefix's value). */
  readonly maxBytes: number;
  /**
   * Returns the meta the executor may use (cleaned, cut), or throws {@link FrameViolation}.
   * `meta` is the parsed JSON (undefined when the frame has none).
   */
  check(meta: unknown, payload: Buffer): unknown;
}

/** Most response headers a function may send. */
export const MAX_HEADERS = 100;
/** Most bytes of response header names and values together. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Error messages and stacks from an instance are cut at this many characters. */
export const MAX_ERROR_TEXT = 64 * 1024;

const LEVELS = new Set(["debug", "info", "warn", "error"]);
const SHAPES = new Set(["fetch-object", "fetch-function", "lambda"]);
/** The only error codes an instance may raise for an invocation. */
const INVOCATION_CODES = new Set(["NIMBUS_FUNCTION_ERROR", "NIMBUS_BAD_RESPONSE"]);
/** The only reasons an isolate host may give for an isolate going away. */
const GONE_CODES = new Set(["NIMBUS_MEMORY_LIMIT", "NIMBUS_CPU_LIMIT", "NIMBUS_INSTANCE_CRASHED"]);
/** RFC 9110 token: what a header name may be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What `http.ServerResponse` accepts in a header value (no CR, LF, NUL, other controls, > 0xff). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Header names a function may not set: the platform's own. */
const PLATFORM_PREFIX = "x-nimbus-";

function violation(why: string): never {
  throw new FrameViolation(why);
}

function record(meta: unknown, what: string): Record<string, unknown> {
  if (meta === null || typeof meta !== "object" || Array.isArray(meta))
    violation(`${what} meta must be an object`);
  return meta as Record<string, unknown>;
}

function finite(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) violation(`${what} must be a finite number ≥ 0`);
  return v;
}

function text(v: unknown, what: string, max: number): string {
  if (typeof v !== "string") violation(`${what} must be a string`);
  return cutLogLine(v, max);
}

function optionalText(v: unknown, what: string, max: number): string | undefined {
  return v === undefined || v === null ? undefined : text(v, what, max);
}

function noMeta(meta: unknown, what: string): undefined {
  if (meta !== undefined) violation(`${what} carries no meta`);
  return undefined;
}

/**
 * Checks a response head: integer status 200–599 (a final 1xx would leave the caller's
 * connection waiting), at most {@link MAX_HEADERS} pairs of strings, token names, values
 * `http.ServerResponse` accepts, {@link MAX_HEADER_BYTES} in all. Names come out lower-case;
 * `x-nimbus-*` headers are dropped (only the platform sets those).
 */
export function checkHead(meta: unknown): { status: number; headers: [string, string][] } {
  const m = record(meta, "response head");
  const status = m.status;
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) {
    violation(`status must be an integer from 200 to 599, got ${String(status).slice(0, 40)}`);
  }
  const headers = m.headers;
  if (!Array.isArray(headers)) violation("headers must be a list of [name, value] pairs");
  if (headers.length > MAX_HEADERS) violation(`${headers.length} headers (at most ${MAX_HEADERS})`);
  const out: [string, string][] = [];
  let bytes = 0;
  for (const h of headers as unknown[]) {
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== "string" || typeof h[1] !== "string") {
      violation("each header must be a pair of strings");
    }
    const name = h[0] as string;
    const value = h[1] as string;
    if (!TOKEN.test(name)) violation(`invalid header name ${JSON.stringify(name.slice(0, 80))}`);
    if (!HEADER_VALUE.test(value)) {
      violation(`header ${JSON.stringify(name.slice(0, 80))} has a character a header value may not hold`);
    }
    bytes += name.length + value.length;
    if (bytes > MAX_HEADER_BYTES) violation(`headers over ${MAX_HEADER_BYTES} bytes`);
    const lower = name.toLowerCase();
    if (lower.startsWith(PLATFORM_PREFIX)) continue;
    out.push([lower, value]);
  }
  return { status, headers: out };
}

/** Checks a log line: known level, finite time, string message cut at {@link MAX_LOG_LINE}. */
export function checkLog(meta: unknown): { level: string; t: number; msg: string; slot?: number } {
  const m = record(meta, "log");
  if (typeof m.level !== "string" || !LEVELS.has(m.level))
    violation("log level must be debug|info|warn|error");
  const t = finite(m.t, "log time");
  const msg = text(m.msg, "log message", MAX_LOG_LINE);
  return { level: m.level, t, msg };
}

const KB = 1024;
const BINDING = /^[A-Z_][A-Z0-9_]{0,63}$/;
const CONTENT_TYPES = new Set(["json", "text", "bytes"]);

/**
 * Checks a QUEUE_SEND (a producer binding's send): a request number, a binding name, 1 to
 * 100 messages of at most 128 KB each whose sizes add up to the payload (at most 256 KB),
 * known content types, delays of 0 to 12 h. Whether the binding is the function's own is
 * {@link checkQueueBinding}'s job (the guard does not know which function a frame is for).
 */
export function checkQueueSend(meta: unknown, payload: Buffer): QueueSendMeta {
  const m = record(meta, "queue send");
  const req = m.req;
  if (typeof req !== "number" || !Number.isInteger(req) || req < 0 || req > 2 ** 31)
    violation("queue send: req must be an integer");
  if (typeof m.binding !== "string" || !BINDING.test(m.binding)) violation("queue send: bad binding name");
  const list = m.messages;
  if (!Array.isArray(list) || list.length === 0 || list.length > QUEUE_LIMITS.batchMessages)
    violation(`queue send: 1 to ${QUEUE_LIMITS.batchMessages} messages`);
  let total = 0;
  const messages: QueueSendMeta["messages"] = [];
  for (const raw of list as unknown[]) {
    const x = record(raw, "queue message");
    const bytes = x.bytes;
    if (
      typeof bytes !== "number" ||
      !Number.isInteger(bytes) ||
      bytes < 0 ||
      bytes > QUEUE_LIMITS.messageBytes
    )
      violation(`queue send: a message of more than ${QUEUE_LIMITS.messageBytes} bytes`);
    if (typeof x.contentType !== "string" || !CONTENT_TYPES.has(x.contentType))
      violation("queue send: unknown content type");
    const out: QueueSendMeta["messages"][number] = {
      bytes,
      contentType: x.contentType as QueueSendMeta["messages"][number]["contentType"],
    };
    if (x.delaySeconds !== undefined) {
      const d = x.delaySeconds;
      if (typeof d !== "number" || !Number.isInteger(d) || d < 0 || d > QUEUE_LIMITS.delaySeconds)
        violation("queue send: delaySeconds out of range");
      out.delaySeconds = d;
    }
    total += bytes;
    messages.push(out);
  }
  if (total !== payload.length) violation("queue send: message sizes do not add up to the payload");
  if (total > QUEUE_LIMITS.batchBytes) violation(`queue send: more than ${QUEUE_LIMITS.batchBytes} bytes`);
  return { req, binding: m.binding, messages };
}

/**
 * Checks that a send names one of the function's own producer bindings: a frame naming
 * another (the runtime never builds one) is forged, and a violation.
 */
export function checkQueueBinding(binding: string, own: readonly string[] | undefined): void {
  if (!own?.includes(binding))
    violation(`queue send through binding '${binding}', which the function does not have`);
}

/** Rules for every frame type a runtime process (and an isolate host) may send. */
export const INSTANCE_RULES: Readonly<Record<number, FrameRule>> = {
  [T.READY]: {
    maxBytes: 4 * KB,
    check: (meta) => (meta === undefined ? {} : record(meta, "ready")),
  },
  [T.LOADED]: {
    maxBytes: 1024 * KB,
    check(meta) {
      const m = record(meta, "loaded");
      if (typeof m.ok !== "boolean") violation("loaded.ok must be a boolean");
      const out: Record<string, unknown> = { ok: m.ok, loadMs: finite(m.loadMs ?? 0, "loadMs") };
      if (m.shape !== undefined) {
        if (typeof m.shape !== "string" || !SHAPES.has(m.shape)) violation("unknown handler shape");
        out.shape = m.shape;
      }
      if (m.ok && out.shape === undefined) violation("a loaded function needs a handler shape");
      if (m.config !== undefined) out.config = m.config;
      if (m.error !== undefined) {
        const e = record(m.error, "loaded.error");
        out.error = {
          message: text(e.message, "loaded.error.message", MAX_ERROR_TEXT),
          stack: optionalText(e.stack, "loaded.error.stack", MAX_ERROR_TEXT),
        };
      }
      return out;
    },
  },
  [T.RESP_HEAD]: { maxBytes: 256 * KB, check: checkHead },
  [T.RESP_CHUNK]: { maxBytes: MAX_CHUNK + 4 * KB, check: (meta) => noMeta(meta, "a body chunk") },
  [T.RESP_END]: {
    maxBytes: 4 * KB,
    check(meta) {
      const m = record(meta, "response end");
      if (typeof m.pending !== "boolean") violation("response end: pending must be a boolean");
      return { cpuMs: finite(m.cpuMs, "cpuMs"), pending: m.pending };
    },
  },
  [T.INVOKE_ERROR]: {
    maxBytes: 1024 * KB,
    check(meta) {
      const m = record(meta, "invocation error");
      if (typeof m.code !== "string" || !INVOCATION_CODES.has(m.code)) {
        violation(
          `error code ${JSON.stringify(String(m.code).slice(0, 60))} is not one an instance may raise`,
        );
      }
      return {
        code: m.code,
        message: text(m.message ?? "", "error message", MAX_ERROR_TEXT),
        stack: optionalText(m.stack, "error stack", MAX_ERROR_TEXT),
        cpuMs: finite(m.cpuMs ?? 0, "cpuMs"),
      };
    },
  },
  [T.LOG]: { maxBytes: 2048 * KB, check: checkLog },
  [T.DONE]: {
    maxBytes: 4 * KB,
    check: (meta) => ({ cpuMs: finite(record(meta, "done").cpuMs, "cpuMs") }),
  },
  [T.QUEUE_SEND]: { maxBytes: QUEUE_LIMITS.batchBytes + 64 * KB, check: checkQueueSend },
};

/** Rules for an isolate host: the instance rules, plus GONE and log lines naming their isolate. */
export const ISOLATE_HOST_RULES: Readonly<Record<number, FrameRule>> = {
  ...INSTANCE_RULES,
  [T.LOG]: {
    maxBytes: 2048 * KB,
    check(meta) {
      const line = checkLog(meta);
      const slot = (meta as { slot?: unknown }).slot;
      if (slot !== undefined) {
        if (typeof slot !== "number" || !Number.isInteger(slot) || slot < 0)
          violation("log slot must be an integer");
        line.slot = slot;
      }
      return line;
    },
  },
  [TI.GONE]: {
    maxBytes: 64 * KB,
    check(meta) {
      const m = record(meta, "gone");
      if (typeof m.code !== "string" || !GONE_CODES.has(m.code))
        violation("unknown reason for an isolate going away");
      return { code: m.code, message: text(m.message, "gone message", 4 * KB) };
    },
  },
  [TI.SPAN]: { maxBytes: 4 * KB, check: checkFetchSpan },
};

const SPAN_ID = /^[0-9a-f]{16}$/;
const SPAN_HOST = /^[0-9A-Za-z.:_-]{1,253}$/;
const SPAN_METHOD = /^(?:[A-Za-z]{1,16}|_OTHER)$/;

/**
 * Checks a fetch span from an isolate host: its id, host, method and status strictly shaped
 * (they become span attributes in the operator's tracing backend), times finite.
 */
export function checkFetchSpan(meta: unknown): FetchSpanMeta {
  const m = record(meta, "fetch span");
  if (typeof m.spanId !== "string" || !SPAN_ID.test(m.spanId))
    violation("fetch span id must be 16 hex digits");
  if (typeof m.host !== "string" || !SPAN_HOST.test(m.host)) violation("fetch span host is malformed");
  if (typeof m.method !== "string" || !SPAN_METHOD.test(m.method))
    violation("fetch span method is malformed");
  if (m.scheme !== "http" && m.scheme !== "https") violation("fetch span scheme must be http or https");
  const port = m.port;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
    violation("fetch span port must be 1-65535");
  const status = m.status;
  if (typeof status !== "number" || !Number.isInteger(status) || status < 0 || status > 999)
    violation("fetch span status must be an integer 0-999");
  if (typeof m.propagated !== "boolean") violation("fetch span propagated must be a boolean");
  const out: FetchSpanMeta = {
    spanId: m.spanId,
    host: m.host,
    port,
    method: m.method === "_OTHER" ? m.method : m.method.toUpperCase(),
    scheme: m.scheme,
    startMs: finite(m.startMs, "fetch span startMs"),
    endMs: finite(m.endMs, "fetch span endMs"),
    status,
    propagated: m.propagated,
  };
  const error = optionalText(m.error, "fetch span error", 256);
  if (error !== undefined) out.error = error;
  return out;
}

/** Where one invocation's response stream is. */
const OPEN = 0;
const HEADED = 1;
/** The response ended; `ctx.waitUntil` work still runs (a DONE follows). */
const BACKGROUND = 2;

/** Options of a {@link FrameGuard}. */
export interface FrameGuardOptions {
  /** The frame types the sender may send. @default INSTANCE_RULES */
  rules?: Readonly<Record<number, FrameRule>>;
  /** Receives each frame that passed, meta cleaned. */
  onFrame: (frame: Frame) => void;
  /** Called once, on the first violation; every later byte is dropped. */
  onViolation: (why: string) => void;
}

const EMPTY = Buffer.alloc(0);
/** type (1) + id (4) + meta length (4): the least a frame's length prefix may say. */
const MIN_LEN = 9;

/**
 * Decodes and checks the frames an instance sends. Never throws on input; never buffers more
 * of a frame than its type's cap.
 */
export class FrameGuard {
  private readonly rules: Readonly<Record<number, FrameRule>>;
  private readonly onFrame: (frame: Frame) => void;
  private readonly onViolation: (why: string) => void;
  private parts: Buffer[] = [];
  private size = 0;
  /** Bytes of the frame being received (prefix included), 0 while its header is awaited. */
  private need = 0;
  private broken = false;
  /** Invocations the platform started and whose response is not over, by frame id. */
  private readonly streams = new Map<number, number>();

  constructor(options: FrameGuardOptions) {
    this.rules = options.rules ?? INSTANCE_RULES;
    this.onFrame = options.onFrame;
    this.onViolation = options.onViolation;
  }

  /** Whether a violation was seen. */
  get violated(): boolean {
    return this.broken;
  }

  /** The platform sent INVOKE with this id: response frames for it are expected now. */
  open(id: number): void {
    this.streams.set(id, OPEN);
  }

  /** The platform gave up on an invocation (timeout, instance gone): its frames are dropped. */
  close(id: number): void {
    this.streams.delete(id);
  }

  /** Feeds bytes read from the instance. */
  push(chunk: Buffer): void {
    if (this.broken) return;
    try {
      let off = 0;
      if (this.size === 0) {
        // Nothing buffered: the frames lying whole in this read are decoded in place (one
        // read usually holds a turn's frames), the same checks in the same order.
        while (chunk.length - off >= 5) {
          const len = this.checkPrefix(chunk, off);
          const end = off + 4 + len;
          if (end > chunk.length) break;
          const frame = this.decode(chunk, off, end);
          off = end;
          if (frame) this.onFrame(frame);
          if (this.broken) return;
        }
        if (off === chunk.length) return;
      }
      this.parts.push(off === 0 ? chunk : chunk.subarray(off));
      this.size += chunk.length - off;
      for (;;) {
        if (this.need === 0) {
          if (this.size < 5) return;
          this.need = 4 + this.checkPrefix(this.peek(5), 0);
        }
        if (this.size < this.need) return;
        const buf = this.take(this.need);
        this.need = 0;
        const frame = this.decode(buf, 0, buf.length);
        if (frame) this.onFrame(frame);
        if (this.broken) return;
      }
    } catch (err) {
      this.fail(err instanceof FrameViolation ? err.message : `frame handling failed: ${String(err)}`);
    }
  }

  /**
   * Checks a frame's length prefix and type (at `off`) before a byte of its body is kept;
   * returns the length.
   */
  private checkPrefix(buf: Buffer, off: number): number {
    const len = buf.readUInt32LE(off);
    const type = buf[off + 4]!;
    const rule = this.rules[type];
    if (!rule) violation(`frame type ${type} is not one an instance may send`);
    if (len < MIN_LEN || len > rule.maxBytes) {
      violation(`a frame of type ${type} and ${len} bytes (at most ${rule.maxBytes})`);
    }
    return len;
  }

  private fail(why: string): void {
    if (this.broken) return;
    this.broken = true;
    this.parts = [];
    this.size = 0;
    this.streams.clear();
    this.onViolation(why);
  }

  /** The first `n` bytes buffered, without consuming them. */
  private peek(n: number): Buffer {
    const first = this.parts[0]!;
    if (first.length >= n) return first;
    const joined = Buffer.concat(this.parts);
    this.parts = [joined];
    return joined;
  }

  /** Consumes the first `n` bytes buffered (concatenating only when a frame spans reads). */
  private take(n: number): Buffer {
    const first = this.parts[0]!;
    let out: Buffer;
    if (first.length === n) {
      out = first;
      this.parts.shift();
    } else if (first.length > n) {
      out = first.subarray(0, n);
      this.parts[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const p = this.parts[0]!;
        const k = Math.min(p.length, n - off);
        p.copy(out, off, 0, k);
        off += k;
        if (k === p.length) this.parts.shift();
        else this.parts[0] = p.subarray(k);
      }
    }
    this.size -= n;
    return out;
  }

  /** Decodes and checks the frame at `buf[start, end)`. */
  private decode(buf: Buffer, start: number, end: number): Frame | undefined {
    const type = buf[start + 4]!;
    const id = buf.readUInt32LE(start + 5);
    const metaLen = buf.readUInt32LE(start + 9);
    if (metaLen > end - start - 13) violation(`meta length ${metaLen} exceeds the frame`);
    const metaStart = start + 13;
    let raw: unknown;
    if (metaLen > 0) {
      try {
        raw = JSON.parse(buf.toString("utf8", metaStart, metaStart + metaLen));
      } catch {
        violation("meta is not valid JSON");
      }
    }
    const payloadStart = metaStart + metaLen;
    if (type !== T.RESP_CHUNK && type !== T.QUEUE_SEND && payloadStart < end) {
      violation(`frame type ${type} carries no payload`);
    }
    // Copied out, so that it does not pin a larger read buffer.
    const payload = payloadStart === end ? EMPTY : copyOut(buf, payloadStart, end);
    const meta = this.rules[type]!.check(raw, payload);
    if (!this.inOrder(type, id, meta)) return undefined;
    return { type, id, meta, payload };
  }

  /**
   * Checks a response frame against its invocation's stream. Frames for an invocation the
   * platform no longer waits for (it timed out, or was failed) are dropped: they race with
   * its end, and are no violation.
   */
  private inOrder(type: number, id: number, meta: unknown): boolean {
    if (
      type !== T.RESP_HEAD &&
      type !== T.RESP_CHUNK &&
      type !== T.RESP_END &&
      type !== T.INVOKE_ERROR &&
      type !== T.DONE
    ) {
      return true;
    }
    const state = this.streams.get(id);
    if (state === undefined) return false;
    switch (type) {
      case T.RESP_HEAD:
        if (state !== OPEN) violation("a second response head");
        this.streams.set(id, HEADED);
        return true;
      case T.RESP_CHUNK:
        if (state !== HEADED) violation("a body chunk outside a response");
        return true;
      case T.RESP_END:
        if (state !== HEADED) violation("the end of a response that has no head");
        if ((meta as { pending: boolean }).pending) this.streams.set(id, BACKGROUND);
        else this.streams.delete(id);
        return true;
      case T.INVOKE_ERROR:
        if (state === BACKGROUND) violation("an error after the response ended");
        this.streams.delete(id);
        return true;
      default:
        // DONE: background work settled.
        if (state !== BACKGROUND) violation("done before the response ended");
        this.streams.delete(id);
        return true;
    }
  }
}
