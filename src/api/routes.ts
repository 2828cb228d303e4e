/**
 * The control API (`/api/v1/…`): JSON routes with schemas, documented by the generated
 * OpenAPI document at `/api/v1/openapi.json`. Every route but health and the document
 * requires a bearer key.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { checkFunctionName } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { Protections } from "../executors/process/sandbox.ts";
import { DrainWriter } from "../gateway/drain.ts";

import { MAX_BODY } from "../gateway/gateway.ts";
import type { Invoker, Responder } from "../invoker/invoker.ts";
import { cost, type PricePlan } from "../invoker/pricing.ts";
import type { Recorder } from "../invoker/recorder.ts";
import type { Registry } from "../invoker/registry.ts";
import type { Scheduler } from "../scheduler/pool.ts";
import type { Store, VersionRecord } from "../store/types.ts";
import type { Auth, Scope } from "./auth.ts";
import type { Deployer } from "./deploy.ts";
import { type LogStreams, registerLogRoutes } from "./logs.ts";
import { registerTopRoute } from "./top.ts";

/** What the routes need. */
export interface ApiContext {
  store: Store;
  registry: Registry;
  scheduler: Scheduler;
  invoker: Invoker;
  recorder: Recorder;
  /** Live log streams (SSE). */
  logStreams: LogStreams;
  deployer: Deployer;
  auth: Auth;
  protections: Protections;
  /** Sandbox mode, the warning said when unsandboxed, and the operator's egress grants. */
  sandbox: { mode: string; warning: string | undefined; egressAllow: string[] };
  pricePlan: PricePlan;
  dataDir: string;
  /** Base URL the server answers on, for printing function URLs. */
  baseUrl: () => string;
  warmPool: () => Record<number, number>;
  /** Machine-wide use against its limits. */
  machine: () => Record<string, number>;
}

const TENANT = "default";

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" }, details: {} },
      required: ["code", "message"],
    },
  },
};
const nameParam = {
  type: "object",
  properties: { name: { type: "string", description: "Function name (^[a-z][a-z0-9-]{0,62}$)" } },
  required: ["name"],
};
const versionSchema = {
  type: "object",
  properties: {
    name: { type: "string" },
    version: { type: "integer" },
    hash: { type: "string" },
    executor: { type: "string", enum: ["process", "isolate"] },
    config: { type: "object", additionalProperties: true },
    sizeBytes: { type: "integer" },
    createdAt: { type: "integer", description: "ms since the epoch" },
    latest: { type: "boolean" },
  },
};
const errors = { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema };

/**
 * A version's config as the API shows it: broker passwords in triggers are replaced by
 * `"***"` (they stay in the store, for the trigger to connect with).
 */
export function redactConfig(config: VersionRecord["config"]): VersionRecord["config"] {
  const triggers = (config as { triggers?: unknown }).triggers;
  if (!Array.isArray(triggers) || !triggers.some((t) => t && typeof t === "object" && "password" in t)) {
    return config;
  }
  return {
    ...config,
    triggers: triggers.map((t) =>
      t && typeof t === "object" && "password" in t ? { ...t, password: "***" } : t,
    ),
  } as VersionRecord["config"];
}

function versionView(v: VersionRecord, latest: number) {
  return {
    name: v.name,
    version: v.version,
    hash: v.hash,
    executor: v.executor,
    config: redactConfig(v.config),
    sizeBytes: v.sizeBytes,
    createdAt: v.createdAt,
    latest: v.version === latest,
  };
}

/** Registers every control API route on `app`. */
export function registerRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const guard =
    (scope: Scope) =>
    async (req: FastifyRequest): Promise<void> => {
      await ctx.auth.require(req.headers.authorization, scope);
    };

  const fnOr404 = (name: string) => {
    checkFunctionName(name);
    const fn = ctx.registry.getFunction(TENANT, name);
    if (!fn) {
      throw new NimbusError(
        "NIMBUS_FN_NOT_FOUND",
        `No function named '${name}'. List deployed functions with 'nimbus ls'.`,
      );
    }
    return fn;
  };

  app.get(
    "/api/v1/health",
    {
      schema: {
        summary: "Liveness check (no key needed)",
        response: { 200: { type: "object", additionalProperties: true } },
      },
    },
    async () => ({
      ok: true,
      sandbox: { mode: ctx.sandbox.mode, ...(ctx.sandbox.warning ? { warning: ctx.sandbox.warning } : {}) },
    }),
  );

  app.get(
    "/api/v1/status",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Server status: sandbox protections, warm pool",
        security: [{ bearer: [] }],
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async () => ({
      url: ctx.baseUrl(),
      dataDir: ctx.dataDir,
      sandbox: { ...ctx.protections, ...ctx.sandbox },
      warmPool: ctx.warmPool(),
      machine: ctx.machine(),
      pricePlan: ctx.pricePlan,
    }),
  );

  app.get(
    "/api/v1/functions",
    {
      onRequest: guard("read"),
      schema: {
        summary: "List functions",
        security: [{ bearer: [] }],
        response: {
          200: {
            type: "object",
            properties: {
              functions: {
                type: "array",
                items: {
                  type: "object",
                  properties: {
                    name: { type: "string" },
                    latest: { type: "integer" },
                    executor: { type: "string" },
                    url: { type: "string" },
                    updatedAt: { type: "integer" },
                    instances: { type: "integer", description: "Started instances (idle + busy)" },
                    idle: { type: "integer" },
                    busy: { type: "integer" },
                    starting: { type: "integer" },
                    queued: { type: "integer" },
                  },
                },
              },
            },
          },
          ...errors,
        },
      },
    },
    async () => ({
      functions: ctx.registry
        .all()
        .filter((f) => f.tenant === TENANT)
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((f) => {
          const t = { idle: 0, busy: 0, starting: 0, queued: 0 };
          for (const p of ctx.scheduler.poolsOf(TENANT, f.name)) {
            const st = p.stats();
            t.idle += st.idle;
            t.busy += st.busy;
            t.starting += st.starting;
            t.queued += st.queued;
          }
          return {
            name: f.name,
            latest: f.latest,
            executor: ctx.registry.getVersion(TENANT, f.name, f.latest)?.executor ?? "process",
            url: `${ctx.baseUrl()}/fn/${f.name}`,
            updatedAt: f.updatedAt,
            instances: t.idle + t.busy,
            ...t,
          };
        }),
    }),
  );

  app.get<{ Params: { name: string } }>(
    "/api/v1/functions/:name",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Function details: latest version, config, instances by state, sandbox",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (req) => {
      const fn = fnOr404(req.params.name);
      const latest = ctx.registry.getVersion(TENANT, fn.name, fn.latest)!;
      const pools = ctx.scheduler.poolsOf(TENANT, fn.name).map((p) => p.stats());
      const totals = { starting: 0, idle: 0, busy: 0, queued: 0 };
      for (const s of pools) {
        totals.starting += s.starting;
        totals.idle += s.idle;
        totals.busy += s.busy;
        totals.queued += s.queued;
      }
      return {
        name: fn.name,
        url: `${ctx.baseUrl()}/fn/${fn.name}`,
        latest: fn.latest,
        createdAt: fn.createdAt,
        updatedAt: fn.updatedAt,
        version: versionView(latest, fn.latest),
        instances: { ...totals, byVersion: pools },
        sandbox: {
          executor: latest.executor,
          bwrap: ctx.protections.bwrap,
          cgroups: ctx.protections.cgroups,
          protectionsOff: ctx.protections.off,
          mode: ctx.sandbox.mode,
          ...(ctx.sandbox.warning ? { warning: ctx.sandbox.warning } : {}),
        },
      };
    },
  );

  app.delete<{ Params: { name: string } }>(
    "/api/v1/functions/:name",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Delete a function, its versions, logs and records",
        security: [{ bearer: [] }],
        params: nameParam,
        response: { 200: { type: "object", properties: { deleted: { type: "string" } } }, ...errors },
      },
    },
    async (req) => {
      const fn = fnOr404(req.params.name);
      await ctx.recorder.flush();
      await ctx.scheduler.drop(TENANT, fn.name);
      await ctx.store.deleteFunction(TENANT, fn.name);
      await ctx.registry.refresh(TENANT, fn.name);
      return { deleted: fn.name };
    },
  );

  app.post<{
    Params: { name: string };
    Body: { code: string; sourceMap?: string; config?: Record<string, unknown> };
  }>(
    "/api/v1/functions/:name/versions",
    {
      onRequest: guard("deploy"),
      bodyLimit: 64 * 1024 * 1024,
      schema: {
        summary:
          "Deploy a new version (bundled code + config). Identical code and config returns the existing version.",
        security: [{ bearer: [] }],
        params: nameParam,
        body: {
          type: "object",
          required: ["code"],
          properties: {
            code: { type: "string", description: "The bundled ES module" },
            sourceMap: { type: "string", description: "Its source map (JSON)" },
            config: {
              type: "object",
              additionalProperties: true,
              description: "Function config (nimbus.json); overrides the inline `export const config`",
            },
          },
        },
        response: {
          200: {
            type: "object",
            properties: {
              version: versionSchema,
              created: { type: "boolean" },
              url: { type: "string" },
              checkMs: { type: "number" },
              warning: { type: "string", description: "Set when functions are not sandboxed" },
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const r = await ctx.deployer.deploy(TENANT, { name: req.params.name, ...req.body });
      const fn = ctx.registry.getFunction(TENANT, req.params.name)!;
      return {
        version: versionView(r.version, fn.latest),
        created: r.created,
        url: `${ctx.baseUrl()}/fn/${req.params.name}`,
        checkMs: r.checkMs,
        ...(ctx.sandbox.warning ? { warning: ctx.sandbox.warning } : {}),
      };
    },
  );

  app.get<{ Params: { name: string } }>(
    "/api/v1/functions/:name/versions",
    {
      onRequest: guard("read"),
      schema: {
        summary: "List a function's versions",
        security: [{ bearer: [] }],
        params: nameParam,
        response: {
          200: { type: "object", properties: { versions: { type: "array", items: versionSchema } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const fn = fnOr404(req.params.name);
      const versions = await ctx.store.listVersions(TENANT, fn.name);
      return { versions: versions.map((v) => versionView(v, fn.latest)) };
    },
  );

  app.post<{ Params: { name: string }; Body: { version: number } }>(
    "/api/v1/functions/:name/rollback",
    {
      onRequest: guard("deploy"),
      schema: {
        summary: "Point `latest` at an earlier version",
        security: [{ bearer: [] }],
        params: nameParam,
        body: {
          type: "object",
          required: ["version"],
          properties: { version: { type: "integer", minimum: 1 } },
        },
        response: {
          200: { type: "object", properties: { name: { type: "string" }, latest: { type: "integer" } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const fn = fnOr404(req.params.name);
      const v = ctx.registry.getVersion(TENANT, fn.name, req.body.version);
      if (!v) {
        throw new NimbusError(
          "NIMBUS_VERSION_NOT_FOUND",
          `Function '${fn.name}' has no version ${req.body.version}. List them with 'nimbus versions ${fn.name}'.`,
        );
      }
      await ctx.store.setLatest(TENANT, fn.name, v.version);
      await ctx.registry.refresh(TENANT, fn.name);
      ctx.invoker.poolFor(v).ensureMin();
      return { name: fn.name, latest: v.version };
    },
  );

  // The invoke route takes any body as raw bytes, whatever its content type.
  app.register(async (child) => {
    child.removeAllContentTypeParsers();
    child.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
    child.post<{
      Params: { name: string };
      Querystring: { path?: string; method?: string; version?: number };
    }>(
      "/api/v1/functions/:name/invoke",
      {
        onRequest: guard("invoke"),
        bodyLimit: MAX_BODY,
        schema: {
          summary:
            "Invoke a function synchronously; the request body is passed as is, the function's response (status, headers, body) comes back as is",
          security: [{ bearer: [] }],
          params: nameParam,
          querystring: {
            type: "object",
            properties: {
              path: { type: "string", description: "Path (and query) the function sees", default: "/" },
              method: { type: "string", description: "HTTP method the function sees", default: "POST" },
              version: { type: "integer", minimum: 1 },
            },
          },
        },
      },
      async (req, reply) => {
        checkFunctionName(req.params.name);
        const v = ctx.invoker.resolve(TENANT, req.params.name, req.query.version);
        const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const headers: [string, string][] = [];
        for (const [k, val] of Object.entries(req.headers)) {
          if (k === "authorization" || k === "host" || k === "content-length" || val === undefined) continue;
          headers.push([k, Array.isArray(val) ? val.join(", ") : val]);
        }
        reply.hijack();
        const res = reply.raw;
        const drain = new DrainWriter(res);
        const responder: Responder = {
          head: (status, hs) => {
            const flat: string[] = [];
            for (const [k, val] of hs)
              if (k !== "content-length" && k !== "transfer-encoding") flat.push(k, val);
            res.writeHead(status, flat);
          },
          chunk: (d, consumed) => drain.write(d, consumed),
          onAbort: (cb) =>
            res.once("close", () => {
              if (!res.writableFinished) cb();
            }),
          end: () => res.end(),
          error: (err, headersSent) => {
            if (headersSent) return void res.destroy();
            const text = JSON.stringify(err.toBody());
            res.writeHead(err.status, { "content-type": "application/json", ...err.headers });
            res.end(text);
          },
        };
        const path = req.query.path ?? "/";
        await ctx.invoker.invoke(
          {
            tenant: TENANT,
            name: v.name,
            version: req.query.version,
            method: (req.query.method ?? "POST").toUpperCase(),
            path: path.startsWith("/") ? path : `/${path}`,
            host: req.headers.host ?? "localhost",
            headers,
            body,
            sourceIp: req.ip,
            trigger: "api",
          },
          v,
          responder,
        );
      },
    );
  });

  registerTopRoute(app, {
    store: ctx.store,
    registry: ctx.registry,
    scheduler: ctx.scheduler,
    recorder: ctx.recorder,
    tenant: TENANT,
    guard: guard("read"),
    errors,
  });

  registerLogRoutes(app, {
    streams: ctx.logStreams,
    store: ctx.store,
    recorder: ctx.recorder,
    tenant: TENANT,
    guard: guard("read"),
    fnOr404,
    errors,
  });

  app.get<{ Params: { name: string }; Querystring: { limit?: number } }>(
    "/api/v1/functions/:name/invocations",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Recent invocation records of a function (newest first)",
        security: [{ bearer: [] }],
        params: nameParam,
        querystring: {
          type: "object",
          properties: { limit: { type: "integer", minimum: 1, maximum: 10000, default: 50 } },
        },
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (req) => {
      const fn = fnOr404(req.params.name);
      await ctx.recorder.flush();
      return { invocations: await ctx.store.listInvocations(TENANT, fn.name, req.query.limit ?? 50) };
    },
  );

  app.get<{ Querystring: { from?: number; to?: number } }>(
    "/api/v1/usage",
    {
      onRequest: guard("read"),
      schema: {
        summary: "Requests, GB-seconds, CPU ms and cost per function for a period, priced by the price plan",
        security: [{ bearer: [] }],
        querystring: {
          type: "object",
          properties: {
            from: { type: "integer", description: "Start, ms since the epoch (default: 30 days ago)" },
            to: { type: "integer", description: "End, ms since the epoch (default: now)" },
          },
        },
        response: { 200: { type: "object", additionalProperties: true }, ...errors },
      },
    },
    async (req) => {
      await ctx.recorder.flush();
      const to = req.query.to ?? Date.now() + 1;
      const from = req.query.from ?? to - 30 * 86_400_000;
      const rows = await ctx.store.usage(TENANT, from, to);
      const functions = rows.map((r) => ({ ...r, cost: cost(ctx.pricePlan, r.requests, r.gbSeconds) }));
      const total = functions.reduce(
        (t, r) => ({
          requests: t.requests + r.requests,
          errors: t.errors + r.errors,
          refused: t.refused + r.refused,
          gbSeconds: t.gbSeconds + r.gbSeconds,
          cpuMs: t.cpuMs + r.cpuMs,
          billedMs: t.billedMs + r.billedMs,
          cost: t.cost + r.cost,
        }),
        { requests: 0, errors: 0, refused: 0, gbSeconds: 0, cpuMs: 0, billedMs: 0, cost: 0 },
      );
      return { from, to, pricePlan: ctx.pricePlan, functions, total };
    },
  );
}
