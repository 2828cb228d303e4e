/**
 * `GET /api/v1/functions/<name>/logs`: a function's log lines as JSON, or with `follow=1` a
 * Server-Sent Events stream (`text/event-stream`) of new lines: each line one `log` event
 * whose id is its sequence number, so a client that reconnects with `Last-Event-ID` resumes
 * where it stopped; a comment line every `heartbeat` seconds keeps proxies from closing it.
 *
 * Bounds: at most `maxStreams` streams at once (503 past it), and each stream may have at
 * most `bufferBytes` waiting for its client; a client that reads slower than that is cut
 * off (it can reconnect with Last-Event-ID), the server never buffers for it without bound.
 */
import type { ServerResponse } from "node:http";
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { NimbusError } from "../errors.ts";
import type { Recorder } from "../invoker/recorder.ts";
import type { LogQuery, LogRecord, Store } from "../store/types.ts";

/** Log levels from the most verbose; `level=warn` keeps warn and error. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** Filters of a log read or stream, as the query string gives them. */
export interface LogFilter {
  limit?: number;
  after?: number;
  invocation?: string;
  since?: number;
  level?: (typeof LOG_LEVELS)[number];
  q?: string;
}

/** What the log routes need. */
export interface LogStreamContext {
  store: Store;
  recorder: Recorder;
  /** Streams open at once, all clients. @default 256 */
  maxStreams?: number;
  /** Bytes a stream may have waiting for its client before it is cut off. @default 1048576 */
  bufferBytes?: number;
}

/** The JSON view of a line. */
export function logView(l: LogRecord) {
  return {
    seq: l.seq,
    t: l.t,
    level: l.level,
    version: l.version,
    invocationId: l.invocationId,
    msg: l.msg,
  };
}

/** The store query for a filter. */
export function logQuery(tenant: string, fn: string, f: LogFilter): LogQuery {
  const i = f.level ? LOG_LEVELS.indexOf(f.level) : 0;
  return {
    tenant,
    fn,
    afterSeq: f.after,
    invocationId: f.invocation,
    since: f.since,
    limit: f.limit ?? 100,
    levels: i > 0 ? LOG_LEVELS.slice(i) : undefined,
    text: f.q || undefined,
  };
}

/** The query-string schema shared by the API and the dashboard. */
export const logQuerySchema = {
  type: "object",
  properties: {
    limit: { type: "integer", minimum: 1, maximum: 10000, default: 100 },
    after: { type: "integer", description: "Only lines with seq greater than this" },
    invocation: { type: "string", maxLength: 64, description: "Only lines of this invocation id" },
    since: { type: "integer", description: "Only lines at or after this time (ms since the epoch)" },
    level: { type: "string", enum: [...LOG_LEVELS], description: "Only lines of this level or above" },
    q: { type: "string", maxLength: 256, description: "Only lines containing this text (case-insensitive)" },
    follow: {
      type: "string",
      enum: ["1", "true", "0", "false"],
      description:
        "Stream new lines as Server-Sent Events (text/event-stream; event 'log', id = seq; send Last-Event-ID to resume)",
    },
    heartbeat: {
      type: "integer",
      minimum: 1,
      maximum: 300,
      default: 15,
      description: "With follow: seconds between heartbeat comments",
    },
  },
} as const;

/** Live log streams: the shared SSE writer of the API and the dashboard. */
export class LogStreams {
  private readonly ctx: LogStreamContext;
  private open = 0;
  /** Streams cut off because their client read too slowly, since start. */
  cutOff = 0;

  constructor(ctx: LogStreamContext) {
    this.ctx = ctx;
  }

  /** Streams open now. */
  get active(): number {
    return this.open;
  }

  /**
   * Takes over a Fastify request and answers it with {@link LogStreams.stream} (resuming
   * from its Last-Event-ID header); a refusal goes out as the usual JSON error.
   */
  async answer(
    req: FastifyRequest,
    reply: FastifyReply,
    tenant: string,
    fn: string,
    filter: LogFilter,
    heartbeatMs?: number,
  ): Promise<void> {
    const last = req.headers["last-event-id"];
    reply.hijack();
    try {
      await this.stream(reply.raw, tenant, fn, filter, {
        lastEventId: typeof last === "string" ? last : undefined,
        heartbeatMs,
        log: req.log,
      });
    } catch (err) {
      const e = err instanceof NimbusError ? err : new NimbusError("NIMBUS_INTERNAL");
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(e.status, { "content-type": "application/json", ...e.headers });
        reply.raw.end(JSON.stringify(e.toBody()));
      } else reply.raw.destroy();
    }
  }

  /**
   * Answers `res` with an SSE stream of `fn`'s lines matching `filter`: first the backlog
   * after `lastEventId` (or the newest `limit` lines), then new lines as they come.
   */
  async stream(
    res: ServerResponse,
    tenant: string,
    fn: string,
    filter: LogFilter,
    opts: { lastEventId?: string; heartbeatMs?: number; log: FastifyBaseLogger },
  ): Promise<void> {
    const max = this.ctx.maxStreams ?? 256;
    if (this.open >= max) {
      throw new NimbusError(
        "NIMBUS_OVERLOADED",
        `${max} log streams are open on this server already; close one or retry later.`,
        { headers: { "retry-after": "5" } },
      );
    }
    const cap = this.ctx.bufferBytes ?? 1024 * 1024;
    // Only a plain sequence number resumes; anything else is ignored (never parsed loosely).
    const resume =
      opts.lastEventId !== undefined && /^\d{1,15}$/.test(opts.lastEventId)
        ? Number(opts.lastEventId)
        : Number.NaN;
    let after = Number.isSafeInteger(resume) && resume >= 0 ? resume : filter.after;
    this.open++;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
      connection: "keep-alive",
    });
    // Reconnect after 1 s (the EventSource default is 3).
    res.write("retry: 1000\n\n");
    let closed = false;
    let reading = false;
    let again = false;
    const cut = (): void => {
      this.cutOff++;
      opts.log.warn(
        { fn, buffered: res.writableLength, cap },
        "log stream cut off: its client reads too slowly",
      );
      res.destroy();
    };
    /** Sends the lines after `after`; one read at a time, another after it if woken meanwhile. */
    const pump = async (limit: number): Promise<void> => {
      if (reading) {
        again = true;
        return;
      }
      reading = true;
      try {
        do {
          again = false;
          await this.ctx.recorder.flush();
          if (closed) return;
          const q = logQuery(tenant, fn, { ...filter, after, limit });
          // The backlog without a resume point is the newest `limit` lines; after it, every line.
          const lines = await this.ctx.store.listLogs(q);
          for (const l of lines) {
            if (closed) return;
            after = l.seq;
            res.write(`id: ${l.seq}\nevent: log\ndata: ${JSON.stringify(logView(l))}\n\n`);
            if (res.writableLength > cap) {
              cut();
              return;
            }
          }
          // A full page means more may be waiting.
          if (lines.length >= (q.limit ?? 100)) again = true;
        } while (again && !closed);
      } finally {
        reading = false;
      }
    };
    const wake = (): void => {
      if (!closed) pump(1000).catch((err: unknown) => opts.log.error({ err, fn }, "log stream read failed"));
    };
    const unsubscribe = this.ctx.recorder.follow(tenant, fn, wake);
    const beat = setInterval(() => {
      res.write(": heartbeat\n\n");
      if (res.writableLength > cap) cut();
    }, opts.heartbeatMs ?? 15_000);
    beat.unref();
    res.on("close", () => {
      if (closed) return;
      closed = true;
      this.open--;
      clearInterval(beat);
      unsubscribe();
    });
    await pump(after !== undefined ? 1000 : (filter.limit ?? 100));
  }
}

/** Registers the logs route. `fnOr404` checks the name and returns the function. */
export function registerLogRoutes(
  app: FastifyInstance,
  o: {
    streams: LogStreams;
    store: Store;
    recorder: Recorder;
    tenant: string;
    guard: (req: FastifyRequest) => Promise<void>;
    fnOr404: (name: string) => { name: string };
    errors: Record<number, unknown>;
  },
): void {
  app.get<{ Params: { name: string }; Querystring: LogFilter & { follow?: string; heartbeat?: number } }>(
    "/api/v1/functions/:name/logs",
    {
      onRequest: o.guard,
      schema: {
        summary:
          "Log lines of a function (oldest first), filtered by level, text, invocation id and time. With follow=true: a Server-Sent Events stream of new lines (resumable with Last-Event-ID).",
        security: [{ bearer: [] }],
        params: {
          type: "object",
          properties: { name: { type: "string" } },
          required: ["name"],
        },
        querystring: logQuerySchema,
        response: {
          200: {
            description: "JSON lines; with follow=true a text/event-stream instead",
            type: "object",
            properties: {
              lines: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    seq: { type: "integer" },
                    t: { type: "integer" },
                    level: { type: "string" },
                    version: { type: "integer" },
                    invocationId: { type: ["string", "null"] },
                    msg: { type: "string" },
                  },
                },
              },
            },
          },
          ...o.errors,
        },
      },
    },
    async (req, reply) => {
      const fn = o.fnOr404(req.params.name);
      if (req.query.follow !== "1" && req.query.follow !== "true") {
        await o.recorder.flush();
        const lines = await o.store.listLogs(logQuery(o.tenant, fn.name, req.query));
        return { lines: lines.map(logView) };
      }
      await o.streams.answer(req, reply, o.tenant, fn.name, req.query, (req.query.heartbeat ?? 15) * 1000);
    },
  );
}
