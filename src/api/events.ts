/**
 * Control API routes for async invocations and dead-letter queues:
 * `POST /api/v1/functions/:name/invocations` (202 once durable), `GET /api/v1/invocations/:id`,
 * `GET /api/v1/functions/:name/async-invocations`, and `…/dlq` (list, show, redrive, purge).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { checkFunctionName } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import { type AsyncInvocations, functionQueue, toView } from "../events/async.ts";
import { INVOCATION_ID_HEADER } from "../events/http.ts";
import type { Invoker } from "../invoker/invoker.ts";
import type { Auth, Scope } from "./auth.ts";

/** What these routes need. */
export interface EventsApiContext {
  auth: Auth;
  invoker: Invoker;
  async: AsyncInvocations;
  /** Wakes the dispatcher after a redrive. */
  kick: (queue: string) => void;
}

const TENANT = "default";

/** The API's error body (shared by the event and queue routes). */
export const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" }, details: {} },
      required: ["code", "message"],
    },
  },
};
/** The common error answers of a route. */
export const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema };
const nameParam = {
  type: "object",
  properties: { name: { type: "string", description: "Function name (^[a-z][a-z0-9-]{0,62}$)" } },
  required: ["name"],
};

/** An async invocation (`GET /api/v1/invocations/:id`). */
export const invocationViewSchema = {
  type: "object",
  properties: {
    invocationId: { type: "string" },
    function: { type: "string" },
    state: {
      type: "string",
      enum: ["queued", "running", "succeeded", "retrying", "dead-lettered", "expired"],
    },
    attempts: { type: "integer", description: "Delivery attempts so far (at most 1 + retries)" },
    enqueuedAt: { type: "string", format: "date-time" },
    firstAttemptAt: { type: ["string", "null"] },
    lastAttemptAt: { type: ["string", "null"] },
    finishedAt: { type: ["string", "null"] },
    queueWaitMs: { type: ["number", "null"], description: "Enqueue to first attempt" },
    endToEndMs: { type: ["number", "null"], description: "Enqueue to the terminal outcome" },
    nextAttemptAt: { type: ["string", "null"] },
    result: {
      type: ["object", "null"],
      properties: { status: { type: "integer" }, body: { type: "string" }, bodyBytes: { type: "integer" } },
    },
    error: { type: ["string", "null"] },
    trigger: { type: "string" },
  },
};

/** Registers the routes. */
export function registerEventRoutes(app: FastifyInstance, ctx: EventsApiContext): void {
  const guard =
    (scope: Scope) =>
    async (req: FastifyRequest): Promise<void> => {
      await ctx.auth.require(req.headers.authorization, scope);
    };
  const fnOr404 = (name: string) => {
    checkFunctionName(name);
    return ctx.invoker.resolve(TENANT, name);
  };

  app.post<{ Params: { name: string }; Querystring: { version?: number } }>(
    "/api/v1/functions/:name/invocations",
    {
      onRequest: guard("invoke"),
      schema: {
        summary: "Invoke a function asynchronously (202 once the event is durably stored)",
        description:
          "The body (JSON) is delivered as the Lambda `event`, or as the body of a POST to a fetch handler. An `Idempotency-Key` header de-duplicates within 24 hours: a repeat returns the first invocation's id with `duplicate: true`. Payloads up to 256 KB; a full queue answers 429 NIMBUS_QUEUE_FULL.",
        security: [{ bearer: [] }],
        params: nameParam,
        querystring: { type: "object", properties: { version: { type: "integer", minimum: 1 } } },
        response: {
          202: {
            type: "object",
            properties: { invocationId: { type: "string" }, duplicate: { type: "boolean" } },
          },
          ...errors,
          413: errorSchema,
          429: errorSchema,
          503: errorSchema,
        },
      },
    },
    async (req, reply) => {
      checkFunctionName(req.params.name);
      const v = ctx.invoker.resolve(TENANT, req.params.name, req.query.version);
      const raw = req.body;
      const body = Buffer.isBuffer(raw)
        ? raw
        : raw === undefined || raw === null
          ? Buffer.alloc(0)
          : Buffer.from(JSON.stringify(raw));
      const key = req.headers["idempotency-key"];
      const r = await ctx.async.submit(
        v,
        {
          tenant: TENANT,
          fn: v.name,
          version: req.query.version,
          kind: "event",
          method: "POST",
          path: "/",
          host: req.headers.host ?? "localhost",
          headers: [["content-type", String(req.headers["content-type"] ?? "application/json")]],
          sourceIp: req.ip,
          trigger: "async",
        },
        body,
        typeof key === "string" ? key : undefined,
      );
      return reply
        .code(202)
        .header(INVOCATION_ID_HEADER, r.id)
        .send({ invocationId: r.id, duplicate: r.duplicate });
    },
  );

  app.get<{ Params: { id: string } }>(
    "/api/v1/invocations/:id",
    {
      onRequest: guard("read"),
      schema: {
        summary: "State, attempts, timings and result or error of an async invocation",
        security: [{ bearer: [] }],
        params: { type: "object", properties: { id: { type: "string", maxLength: 64 } }, required: ["id"] },
        response: { 200: invocationViewSchema, ...errors },
      },
    },
    async (req) => ctx.async.get(TENANT, req.params.id),
  );

  app.get<{ Params: { name: string }; Querystring: { limit?: number } }>(
    "/api/v1/functions/:name/async-invocations",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Recent async invocations of a function (newest first) with their state",
        security: [{ bearer: [] }],
        params: nameParam,
        querystring: {
          type: "object",
          properties: { limit: { type: "integer", minimum: 1, maximum: 10000, default: 50 } },
        },
        response: {
          200: {
            type: "object",
            properties: {
              invocations: { type: "array", items: invocationViewSchema },
              stats: { type: "object", additionalProperties: { type: "integer" } },
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const v = fnOr404(req.params.name);
      return {
        invocations: await ctx.async.list(TENANT, v.name, req.query.limit ?? 50),
        stats: await ctx.async.queue.stats(functionQueue(TENANT, v.name)),
      };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { limit?: number } }>(
    "/api/v1/functions/:name/dlq",
    {
      onRequest: guard("read"),
      schema: {
        summary: "The function's dead-letter queue: events out of retries or too old (newest first)",
        security: [{ bearer: [] }],
        params: nameParam,
        querystring: {
          type: "object",
          properties: { limit: { type: "integer", minimum: 1, maximum: 10000, default: 100 } },
        },
        response: {
          200: { type: "object", properties: { events: { type: "array", items: invocationViewSchema } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const v = fnOr404(req.params.name);
      return { events: await ctx.async.list(TENANT, v.name, req.query.limit ?? 100, "dead") };
    },
  );

  app.get<{ Params: { name: string; id: string } }>(
    "/api/v1/functions/:name/dlq/:id",
    {
      onRequest: guard("read"),
      schema: {
        summary: "One dead-lettered event with its payload (base64) and request metadata",
        security: [{ bearer: [] }],
        params: {
          type: "object",
          properties: { name: { type: "string" }, id: { type: "string", maxLength: 64 } },
          required: ["name", "id"],
        },
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (req) => {
      const v = fnOr404(req.params.name);
      const m = await ctx.async.queue.get(req.params.id);
      if (!m || m.queue !== functionQueue(TENANT, v.name) || m.state !== "dead") {
        throw new NimbusError(
          "NIMBUS_INVOCATION_NOT_FOUND",
          `No dead-lettered event '${req.params.id}' for '${v.name}'. List them with 'nimbus dlq ls ${v.name}'.`,
        );
      }
      const body = (await ctx.async.queue.body(m.id)) ?? Buffer.alloc(0);
      let request: unknown = null;
      try {
        const meta = JSON.parse(m.meta) as { method: string; path: string; headers: unknown; kind: string };
        request = { kind: meta.kind, method: meta.method, path: meta.path, headers: meta.headers };
      } catch {}
      return { ...toView(m), request, payloadBase64: body.toString("base64") };
    },
  );

  app.post<{ Params: { name: string }; Body: { ids?: string[] } | undefined }>(
    "/api/v1/functions/:name/dlq/redrive",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Send dead-lettered events (all, or those named) back for delivery with fresh attempts",
        security: [{ bearer: [] }],
        params: nameParam,
        body: {
          type: ["object", "null"],
          properties: { ids: { type: "array", items: { type: "string", maxLength: 64 }, maxItems: 10000 } },
        },
        response: { 200: { type: "object", properties: { redriven: { type: "integer" } } }, ...errors },
      },
    },
    async (req) => {
      const v = fnOr404(req.params.name);
      const q = functionQueue(TENANT, v.name);
      const redriven = await ctx.async.queue.redrive(q, req.body?.ids);
      if (redriven > 0) ctx.kick(q);
      return { redriven };
    },
  );

  app.delete<{ Params: { name: string } }>(
    "/api/v1/functions/:name/dlq",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Delete every dead-lettered event of the function",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: { type: "object", properties: { purged: { type: "integer" } } }, ...errors },
      },
    },
    async (req) => {
      const v = fnOr404(req.params.name);
      return { purged: await ctx.async.queue.purge(functionQueue(TENANT, v.name), "dead") };
    },
  );
}
