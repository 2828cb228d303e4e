/**
 * Control API routes for named queues: create, list, show, delete, purge (`/api/v1/queues`),
 * send (`POST /api/v1/queues/:name/messages`, 202 once durable; `…/messages/batch`), and
 * the dead messages (`/api/v1/queues/:name/dlq`: list, redrive, purge).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { NimbusError } from "../errors.ts";
import { parseDuration } from "../queues/config.ts";
import type { QueueConsumers } from "../queues/consumer.ts";
import type { NamedQueues, SendItem } from "../queues/service.ts";
import type { QueueContentType } from "../runtime/queue-send.ts";
import type { Auth, Scope } from "./auth.ts";
import { errorSchema, errors } from "./events.ts";

/** What these routes need. */
export interface QueuesApiContext {
  auth: Auth;
  named: NamedQueues;
  consumers: QueueConsumers;
}

const TENANT = "default";

const nameParam = {
  type: "object",
  properties: { name: { type: "string", maxLength: 63, description: "Queue name (^[a-z][a-z0-9-]{0,62}$)" } },
  required: ["name"],
};
const statsSchema = {
  type: "object",
  properties: {
    ready: { type: "integer" },
    delayed: { type: "integer" },
    leased: { type: "integer" },
    dead: { type: "integer" },
    succeeded: { type: "integer", description: "Acknowledged, kept 24 h" },
  },
};
const consumerSchema = {
  type: "object",
  properties: {
    function: { type: "string" },
    batchSize: { type: "integer" },
    maxWaitMs: { type: "integer" },
    maxRetries: { type: ["integer", "null"] },
    deadLetterQueue: { type: ["string", "null"] },
    concurrency: { type: "integer" },
    inflight: { type: "integer" },
  },
};
const queueSchema = {
  type: "object",
  properties: {
    name: { type: "string" },
    maxRetries: { type: "integer" },
    dlq: { type: ["string", "null"], description: "Queue dead messages are forwarded to" },
    retentionSeconds: { type: "integer" },
    maxBacklog: { type: "integer" },
    createdAt: { type: "string" },
    stats: statsSchema,
    consumers: { type: "array", items: consumerSchema },
  },
};
const messageSchema = {
  type: "object",
  properties: {
    id: { type: "string" },
    state: { type: "string", enum: ["ready", "leased", "succeeded", "dead"] },
    attempts: { type: "integer" },
    enqueuedAt: { type: "string" },
    finishedAt: { type: ["string", "null"] },
    error: { type: ["string", "null"] },
    deadReason: { type: ["string", "null"] },
    bodyBytes: { type: "integer" },
    contentType: { type: "string" },
    sender: { type: "string" },
  },
};
const idsSchema = {
  type: "object",
  properties: { messageIds: { type: "array", items: { type: "string" } } },
};

/** The content type a raw HTTP body is stored with. */
function contentTypeOf(header: string | undefined): QueueContentType {
  const h = (header ?? "").toLowerCase();
  if (h.startsWith("application/json") || h.includes("+json")) return "json";
  if (h.startsWith("text/")) return "text";
  return "bytes";
}

/** Registers the routes. */
export function registerQueueRoutes(app: FastifyInstance, ctx: QueuesApiContext): void {
  const guard =
    (scope: Scope) =>
    async (req: FastifyRequest): Promise<void> => {
      await ctx.auth.require(req.headers.authorization, scope);
    };
  const withConsumers = async (name: string) => ({
    ...(await ctx.named.info(TENANT, name)),
    consumers: ctx.consumers.list(TENANT, name),
  });

  app.get(
    "/api/v1/queues",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Every named queue with its settings and message counts",
        security: [{ bearer: [] }],
        response: { 200: { type: "object", properties: { queues: { type: "array", items: queueSchema } } } },
      },
    },
    async () => ({
      queues: (await ctx.named.list(TENANT)).map((q) => ({
        ...q,
        consumers: ctx.consumers.list(TENANT, q.name),
      })),
    }),
  );

  app.post<{
    Body: {
      name: string;
      maxRetries?: number;
      dlq?: string;
      retention?: string | number;
      maxBacklog?: number;
    };
  }>(
    "/api/v1/queues",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Create a named queue",
        description:
          "Functions send to it through a producer binding (`queues.producers`), drain it as a consumer (`queues.consumers`). Messages out of retries stay dead in the queue (`/dlq`) and, with `dlq`, are also forwarded to that queue.",
        security: [{ bearer: [] }],
        body: {
          type: "object",
          required: ["name"],
          additionalProperties: false,
          properties: {
            name: { type: "string", maxLength: 63 },
            maxRetries: { type: "integer", minimum: 0, maximum: 100, description: "Default 3" },
            dlq: { type: "string", maxLength: 63, description: "Queue dead messages are forwarded to" },
            retention: {
              type: ["string", "number"],
              description:
                'How long a message may wait ("4d", "12h", or seconds); default 4 days, at most 14',
            },
            maxBacklog: {
              type: "integer",
              minimum: 1,
              description: "Undelivered messages at most (default 10000)",
            },
          },
        },
        response: { 201: queueSchema, ...errors, 409: errorSchema },
      },
    },
    async (req, reply) => {
      const b = req.body;
      let retentionMs: number | undefined;
      if (b.retention !== undefined) {
        try {
          retentionMs = parseDuration("retention", b.retention);
        } catch {
          throw new NimbusError(
            "NIMBUS_BAD_REQUEST",
            'retention must be like "4d", "12h", "30m" or seconds.',
          );
        }
      }
      const q = await ctx.named.create(TENANT, b.name, {
        maxRetries: b.maxRetries,
        dlq: b.dlq,
        retentionMs,
        maxBacklog: b.maxBacklog,
      });
      return reply.code(201).send({ ...q, consumers: ctx.consumers.list(TENANT, q.name) });
    },
  );

  app.get<{ Params: { name: string } }>(
    "/api/v1/queues/:name",
    {
      onRequest: guard("read"),
      schema: {
        summary: "A named queue: settings, message counts, consumers",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: queueSchema, ...errors },
      },
    },
    async (req) => withConsumers(req.params.name),
  );

  app.delete<{ Params: { name: string } }>(
    "/api/v1/queues/:name",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Delete a named queue with its waiting and dead messages",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 204: { type: "null" }, ...errors },
      },
    },
    async (req, reply) => {
      await ctx.named.remove(TENANT, req.params.name);
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { name: string } }>(
    "/api/v1/queues/:name/purge",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Delete a queue's waiting messages",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: { type: "object", properties: { purged: { type: "integer" } } }, ...errors },
      },
    },
    async (req) => ({ purged: await ctx.named.purge(TENANT, req.params.name) }),
  );

  app.post<{ Params: { name: string }; Querystring: { delaySeconds?: number } }>(
    "/api/v1/queues/:name/messages",
    {
      onRequest: guard("invoke"),
      bodyLimit: 256 * 1024,
      schema: {
        summary: "Send one message (202 once it is durably stored)",
        description:
          "The request body is the message: `application/json` bodies reach consumers parsed (Workers) or as the JSON text (Lambda `body`), `text/*` as text, anything else as bytes. At most 128 KB; a full queue answers 429 NIMBUS_QUEUE_BACKLOG_FULL with Retry-After.",
        security: [{ bearer: [] }],
        params: nameParam,
        querystring: {
          type: "object",
          properties: { delaySeconds: { type: "integer", minimum: 0, maximum: 43200 } },
        },
        response: { 202: idsSchema, ...errors, 413: errorSchema, 429: errorSchema, 503: errorSchema },
      },
    },
    async (req, reply) => {
      const raw = req.body;
      const body = Buffer.isBuffer(raw)
        ? raw
        : typeof raw === "string"
          ? Buffer.from(raw)
          : raw === undefined || raw === null
            ? Buffer.alloc(0)
            : Buffer.from(JSON.stringify(raw));
      const ids = await ctx.named.send(
        TENANT,
        req.params.name,
        [
          {
            body,
            contentType: contentTypeOf(req.headers["content-type"]),
            delaySeconds: req.query.delaySeconds,
          },
        ],
        "api",
      );
      return reply.code(202).send({ messageIds: ids });
    },
  );

  app.post<{
    Params: { name: string };
    Body: { messages: { body: unknown; contentType?: QueueContentType; delaySeconds?: number }[] };
  }>(
    "/api/v1/queues/:name/messages/batch",
    {
      onRequest: guard("invoke"),
      bodyLimit: 1024 * 1024,
      schema: {
        summary: "Send up to 100 messages (202 once all are durably stored)",
        description:
          'Each message: `body` (any JSON value for `contentType: "json"`, the default; a string for `"text"`; base64 for `"bytes"`), `delaySeconds`. At most 128 KB a message and 256 KB in all.',
        security: [{ bearer: [] }],
        params: nameParam,
        body: {
          type: "object",
          required: ["messages"],
          properties: {
            messages: {
              type: "array",
              minItems: 1,
              maxItems: 100,
              items: {
                type: "object",
                required: ["body"],
                properties: {
                  body: {},
                  contentType: { type: "string", enum: ["json", "text", "bytes"] },
                  delaySeconds: { type: "integer", minimum: 0, maximum: 43200 },
                },
              },
            },
          },
        },
        response: { 202: idsSchema, ...errors, 413: errorSchema, 429: errorSchema, 503: errorSchema },
      },
    },
    async (req, reply) => {
      const items: SendItem[] = req.body.messages.map((m) => {
        const ct = m.contentType ?? "json";
        if (ct !== "json" && typeof m.body !== "string")
          throw new NimbusError(
            "NIMBUS_BAD_REQUEST",
            `A "${ct}" message body must be a string (base64 for bytes).`,
          );
        const body =
          ct === "json"
            ? Buffer.from(JSON.stringify(m.body) ?? "null")
            : ct === "bytes"
              ? Buffer.from(m.body as string, "base64")
              : Buffer.from(m.body as string);
        return { body, contentType: ct, delaySeconds: m.delaySeconds };
      });
      const ids = await ctx.named.send(TENANT, req.params.name, items, "api");
      return reply.code(202).send({ messageIds: ids });
    },
  );

  // Two listings: recent messages in any state, and the dead ones.
  for (const [path, summary, read] of [
    ["messages", "Recent messages of a queue (state, attempts, error), newest first", "messages"],
    ["dlq", "Dead messages of a queue (out of retries, or past retention), newest first", "dead"],
  ] as const) {
    app.get<{ Params: { name: string }; Querystring: { limit?: number } }>(
      `/api/v1/queues/:name/${path}`,
      {
        onRequest: guard("read"),
        schema: {
          summary,
          security: [{ bearer: [] }],
          params: nameParam,
          querystring: {
            type: "object",
            properties: { limit: { type: "integer", minimum: 1, maximum: 10000, default: 100 } },
          },
          response: {
            200: { type: "object", properties: { messages: { type: "array", items: messageSchema } } },
            ...errors,
          },
        },
      },
      async (req) => ({ messages: await ctx.named[read](TENANT, req.params.name, req.query.limit) }),
    );
  }

  app.post<{ Params: { name: string }; Body: { ids?: string[] } | undefined }>(
    "/api/v1/queues/:name/dlq/redrive",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Deliver dead messages again (all, or those named), attempts reset",
        security: [{ bearer: [] }],
        params: nameParam,
        body: {
          type: ["object", "null"],
          properties: { ids: { type: "array", maxItems: 10000, items: { type: "string", maxLength: 64 } } },
        },
        response: { 200: { type: "object", properties: { redriven: { type: "integer" } } }, ...errors },
      },
    },
    async (req) => ({ redriven: await ctx.named.redrive(TENANT, req.params.name, req.body?.ids) }),
  );

  app.delete<{ Params: { name: string } }>(
    "/api/v1/queues/:name/dlq",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Delete a queue's dead messages",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: { type: "object", properties: { purged: { type: "integer" } } }, ...errors },
      },
    },
    async (req) => ({ purged: await ctx.named.purgeDead(TENANT, req.params.name) }),
  );
}
