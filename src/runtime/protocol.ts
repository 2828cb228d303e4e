/**
 * The frame protocol between the platform and an instance (runtime shim), over one stream
 * socket. Shared by both sides; imports nothing from the platform.
 *
 * Frame: `u32 length` (of everything after it) · `u8 type` · `u32 id` · `u32 metaLength` ·
 * `meta` (UTF-8 JSON, may be empty) · `payload` (raw bytes, never base64).
 *
 * Every frame produced in one event-loop turn goes out in one `write` (see {@link FrameWriter}):
 * the cost of this hop is the number of write system calls, not the encoding.
 */
import type { Socket } from "node:net";
import { MAX_CHUNK } from "./window.ts";

export { FLOW_WINDOW, MAX_CHUNK } from "./window.ts";

/** Frame types. */
export const T = {
  /**
   * instance → platform: the generic runtime is up. meta: {pid, warm}: sent with `warm: false`
   * as soon as it can take a LOAD, then again with `warm: true` once a runtime nobody asked
   * for yet has warmed its invoke path.
   */
  READY: 1,
  /** platform → instance: load a function. meta: {@link LoadMeta} */
  LOAD: 2,
  /** instance → platform: load result. meta: {@link LoadedMeta} */
  LOADED: 3,
  /** platform → instance: one invocation. meta: {@link InvokeMeta}; payload: request body */
  INVOKE: 4,
  /** instance → platform: response status and headers. meta: {@link ResponseHeadMeta} */
  RESP_HEAD: 5,
  /** instance → platform: a chunk of the response body. payload: bytes */
  RESP_CHUNK: 6,
  /** instance → platform: the response is complete. meta: {@link ResponseEndMeta} */
  RESP_END: 7,
  /** instance → platform: the invocation failed. meta: {@link InvokeErrorMeta} */
  INVOKE_ERROR: 8,
  /** instance → platform: one log line. meta: {@link LogMeta} */
  LOG: 9,
  /** instance → platform: every `ctx.waitUntil` promise of the invocation settled. meta: {cpuMs} */
  DONE: 10,
  /**
   * platform → instance: the platform passed on response bytes of this invocation; the
   * instance may send that many more. id: invocation; meta: {@link CreditMeta}
   */
  CREDIT: 11,
  /**
   * platform → instance: the caller went away; stop producing this invocation's response
   * (its stream is cancelled and the invocation ends with an error). id: invocation
   */
  CANCEL: 12,
  /**
   * instance → platform: send messages to a named queue through a producer binding.
   * id: the invocation (0 outside one; an isolate host: the isolate's slot);
   * meta: `QueueSendMeta` (../queue-send.ts); payload: the bodies, one after another
   */
  QUEUE_SEND: 13,
  /** platform → instance: the send is stored durably (or refused). meta: `QueueSentMeta` */
  QUEUE_SENT: 14,
} as const;

/** The message an invocation ends with when its caller went away mid-response. */
export const CANCELLED_MESSAGE = "The caller closed the connection before the response was complete.";

/** More credit for one invocation's response body. */
export interface CreditMeta {
  /** Bytes the instance may send on top of what it may already send. */
  bytes: number;
}

/** What the platform tells a runtime to load. */
export interface LoadMeta {
  /** Absolute path (inside the sandbox) of the bundle to import. */
  file: string;
  functionName: string;
  version: number;
  memoryMB: number;
  timeoutMs: number;
  /** The function's environment variables (and nothing else). */
  env: Record<string, string>;
  /** Producer binding names (`env.JOBS.send`); the platform maps them to queues. */
  queues?: string[];
}

/** The handler shapes the runtime can adapt. */
export type HandlerShape = "fetch-object" | "fetch-function" | "lambda";

/** The load result. */
export interface LoadedMeta {
  ok: boolean;
  shape?: HandlerShape;
  /** The module's `export const config`, if any (JSON-cloned). */
  config?: unknown;
  /** Node built-ins the bundle's compatibility modules provided (isolate executor). */
  node?: string[];
  loadMs: number;
  error?: { message: string; stack?: string };
}

/** One invocation as the platform hands it over. */
export interface InvokeMeta {
  invocationId: string;
  method: string;
  /** Full URL as the function sees it (path below the function's mount). */
  url: string;
  /** Header pairs, lower-case names, repeated names kept. */
  headers: [string, string][];
  /** Milliseconds since the epoch at which the invocation times out. */
  deadline: number;
  sourceIp: string;
  trigger: string;
  /**
   * What the payload is: absent for an HTTP request; `event` for a JSON event payload
   * (a Lambda handler receives it as its `event`, a fetch handler as a POST body);
   * `scheduled` for a cron tick (Workers' `scheduled(controller, env, ctx)` when the module
   * has one; the payload is the EventBridge scheduled event, `x-nimbus-cron` names the cron);
   * `queue` for a trigger batch (MQTT, NATS): `queue(batch)`, Lambda `Records`, or one
   * binary-mode CloudEvent POST per message (`./batch.ts`).
   */
  kind?: "event" | "scheduled" | "queue";
  /** W3C trace context of the invocation's handler span (tracing on): `ctx.traceparent` / `context.traceparent`. */
  traceparent?: string;
}

/** Response status and headers. */
export interface ResponseHeadMeta {
  status: number;
  headers: [string, string][];
}

/** End of a response. */
export interface ResponseEndMeta {
  /** CPU time the instance spent on this invocation so far, in ms (process.cpuUsage). */
  cpuMs: number;
  /** Whether `ctx.waitUntil` work is still running; a DONE frame follows when it settles. */
  pending: boolean;
}

/** A failed invocation. */
export interface InvokeErrorMeta {
  code: "NIMBUS_FUNCTION_ERROR" | "NIMBUS_BAD_RESPONSE";
  message: string;
  stack?: string;
  cpuMs: number;
}

/** One captured log line. */
export interface LogMeta {
  level: "debug" | "info" | "warn" | "error";
  /** Milliseconds since the epoch. */
  t: number;
  msg: string;
}

/** A decoded frame. */
export interface Frame {
  type: number;
  id: number;
  meta: any;
  payload: Buffer;
}

const HEADER = 13;
/** Largest frame accepted (a 6 MB request plus headroom; responses stream in chunks). */
export const MAX_FRAME = 16 * 1024 * 1024;
/** Log lines are cut at this many characters (as CloudWatch caps an event at 256 KB). */
export const MAX_LOG_LINE = 256 * 1024;

const CUT_MARK = /… \[cut: \d{1,15} characters\]$/;

/**
 * Cuts a log line to `max` characters, saying so at its end. A line already cut (by the
 * instance, or an earlier stage) is not cut again, so its marker keeps the original length.
 */
export function cutLogLine(msg: string, max = MAX_LOG_LINE): string {
  if (msg.length <= max) return msg;
  if (msg.length <= max + 40 && CUT_MARK.test(msg)) return msg;
  return `${msg.slice(0, max)}… [cut: ${msg.length} characters]`;
}
const EMPTY = Buffer.alloc(0);

/** Encodes one frame. */
export function encodeFrame(type: number, id: number, meta: unknown, payload?: Uint8Array): Buffer {
  const metaStr = meta === undefined ? "" : JSON.stringify(meta);
  const metaLen = Buffer.byteLength(metaStr);
  const payloadLen = payload ? payload.byteLength : 0;
  const buf = Buffer.allocUnsafe(HEADER + metaLen + payloadLen);
  buf.writeUInt32LE(HEADER - 4 + metaLen + payloadLen, 0);
  buf.writeUInt8(type, 4);
  buf.writeUInt32LE(id, 5);
  buf.writeUInt32LE(metaLen, 9);
  if (metaLen > 0) buf.write(metaStr, HEADER, "utf8");
  if (payload && payloadLen > 0) buf.set(payload, HEADER + metaLen);
  return buf;
}

/** A copy of `buf[start, end)` (one allocation: never a view that would pin `buf`). */
export function copyOut(buf: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  buf.copy(out, 0, start, end);
  return out;
}

/**
 * Incremental frame decoder: push socket data, get complete frames back in order.
 *
 * The bytes of a frame still arriving are kept as a list and joined once the frame is
 * complete: joining on every read would copy a 6 MB frame that arrives in 64 KB reads ~100
 * times over (quadratic — seconds of CPU for one large request body).
 */
export class FrameDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  /** Bytes needed before the next frame can be complete (its length prefix, then all of it). */
  private need = 4;

  /** Feeds bytes; returns every frame now complete. Throws on a frame length out of bounds. */
  push(chunk: Buffer): Frame[] {
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size < this.need) return [];
    let buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    const frames: Frame[] = [];
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (len > MAX_FRAME || len < HEADER - 4) throw new RangeError(`frame of ${len} bytes is out of bounds`);
      if (buf.length - off - 4 < len) break;
      const type = buf.readUInt8(off + 4);
      const id = buf.readUInt32LE(off + 5);
      const metaLen = buf.readUInt32LE(off + 9);
      const metaStart = off + HEADER;
      const payloadStart = metaStart + metaLen;
      const end = off + 4 + len;
      if (payloadStart > end) throw new RangeError(`frame meta of ${metaLen} bytes overruns its frame`);
      const meta = metaLen > 0 ? JSON.parse(buf.toString("utf8", metaStart, payloadStart)) : undefined;
      // Copy payloads out of the shared buffer: a subarray would pin the whole read buffer.
      const payload = payloadStart === end ? EMPTY : copyOut(buf, payloadStart, end);
      frames.push({ type, id, meta, payload });
      off = end;
    }
    if (off < buf.length) {
      const rest = Buffer.from(buf.subarray(off));
      this.parts = [rest];
      this.size = rest.length;
      if (rest.length >= 4) {
        const len = rest.readUInt32LE(0);
        if (len > MAX_FRAME || len < HEADER - 4)
          throw new RangeError(`frame of ${len} bytes is out of bounds`);
        this.need = 4 + len;
      } else this.need = 4;
    } else this.need = 4;
    buf = EMPTY;
    return frames;
  }
}

/** One frame queued by a {@link FrameWriter}: encoded only when its turn's write is built. */
interface QueuedFrame {
  type: number;
  id: number;
  /** The meta's JSON (taken when the frame was sent: the object may change afterwards). */
  meta: string;
  metaBytes: number;
  payload: Uint8Array | undefined;
}

/**
 * Collects frames and writes all the frames of one event-loop turn in a single write. The
 * frames are encoded straight into that write's buffer (one allocation and one copy per
 * turn, not one per frame plus a join).
 */
export class FrameWriter {
  private queue: QueuedFrame[] = [];
  private queuedBytes = 0;
  private scheduled = false;
  private readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
  }

  /**
   * Queues a frame for the end of this turn. Body chunks over {@link MAX_CHUNK} are split
   * and log lines over {@link MAX_LOG_LINE} are cut, so no frame nears {@link MAX_FRAME}.
   */
  send(type: number, id: number, meta?: unknown, payload?: Uint8Array): void {
    if (type === T.RESP_CHUNK && payload && payload.byteLength > MAX_CHUNK) {
      for (let off = 0; off < payload.byteLength; off += MAX_CHUNK) {
        this.send(type, id, meta, payload.subarray(off, Math.min(off + MAX_CHUNK, payload.byteLength)));
      }
      return;
    }
    if (type === T.LOG) {
      const line = meta as LogMeta;
      if (line.msg.length > MAX_LOG_LINE) meta = { ...line, msg: cutLogLine(line.msg) };
    }
    const metaStr = meta === undefined ? "" : JSON.stringify(meta);
    const metaBytes = metaStr.length === 0 ? 0 : Buffer.byteLength(metaStr);
    this.queue.push({ type, id, meta: metaStr, metaBytes, payload });
    this.queuedBytes += HEADER + metaBytes + (payload ? payload.byteLength : 0);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Writes everything queued now. */
  readonly flush = (): void => {
    this.scheduled = false;
    const queue = this.queue;
    const total = this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
    if (queue.length === 0 || this.socket.destroyed) return;
    const buf = Buffer.allocUnsafe(total);
    let off = 0;
    for (const f of queue) {
      const payloadLen = f.payload ? f.payload.byteLength : 0;
      buf.writeUInt32LE(HEADER - 4 + f.metaBytes + payloadLen, off);
      buf[off + 4] = f.type;
      buf.writeUInt32LE(f.id, off + 5);
      buf.writeUInt32LE(f.metaBytes, off + 9);
      off += HEADER;
      if (f.metaBytes > 0) off += buf.write(f.meta, off, f.metaBytes, "utf8");
      if (f.payload && payloadLen > 0) {
        buf.set(f.payload, off);
        off += payloadLen;
      }
    }
    this.socket.write(buf);
  };
}
