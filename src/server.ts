/**
 * `nimbus serve`: composes store, executors, scheduler, invoker, gateway and control API
 * into one HTTP server (data plane on `/fn/…`, control API on `/api/v1/…`).
 */
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyError } from "fastify";
import { Auth } from "./api/auth.ts";
import { Deployer } from "./api/deploy.ts";
import { registerEventRoutes } from "./api/events.ts";
import { registerRoutes } from "./api/routes.ts";
import { NimbusError } from "./errors.ts";
import { AsyncInvocations } from "./events/async.ts";
import { Destinations } from "./events/destinations.ts";
import { Dispatcher } from "./events/dispatcher.ts";
import { acceptAsyncHttp, isAsyncCall } from "./events/http.ts";
import { Schedules } from "./events/schedules.ts";
import { type EgressPolicy, IsolateExecutor } from "./executors/isolate/executor.ts";
import { ProcessExecutor } from "./executors/process/executor.ts";
import { detectProtections, type Protections, sweepStaleCgroups } from "./executors/process/sandbox.ts";
import type { Executor, ExecutorKind } from "./executors/types.ts";
import { Gateway } from "./gateway/gateway.ts";
import { Invoker } from "./invoker/invoker.ts";
import { loadPricePlan } from "./invoker/pricing.ts";
import { Recorder } from "./invoker/recorder.ts";
import { Registry } from "./invoker/registry.ts";
import { SqliteQueue } from "./queue/sqlite/queue.ts";
import type { LogMeta } from "./runtime/protocol.ts";
import { Scheduler } from "./scheduler/pool.ts";
import { SqliteStore } from "./store/sqlite/store.ts";

/** Options of `nimbus serve`. */
export interface ServeOptions {
  /** @default 7070 */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** Data directory. @default "./.nimbus" (or $NIMBUS_HOME) */
  dataDir?: string;
  /** Pre-started runtimes per memory size. @default 2 */
  prewarm?: number;
  /** Turn the sandbox off on purpose (reported as such). @default false */
  noSandbox?: boolean;
  /**
   * Egress rules for `fetch` from isolate functions.
   * @default { default: "allow", allowPrivate: false } (public internet only)
   */
  isolateEgress?: EgressPolicy;
  /** Idle-reaper period, ms. @default 1000 */
  reapIntervalMs?: number;
  /** Invocations running at once on this machine. @default 1000 */
  maxConcurrency?: number;
  /** Memory (MB) all instances together may be given. @default machine memory less the reserve */
  memoryBudgetMB?: number;
  /** Memory (MB) kept free for the system. @default 1024 */
  memoryReserveMB?: number;
  /** How long a request may wait for an instance before 429, ms. @default 10000 */
  queueWaitMs?: number;
  /** A client must send its request headers within this, ms (slow-loris cut-off). @default 10000 */
  headersTimeoutMs?: number;
  /** Autoscaler tick, ms (0 turns pre-scaling off). @default 1000 */
  autoscaleIntervalMs?: number;
  /** Where platform messages go. @default stderr */
  log?: (msg: string) => void;
  /** Async events, queues and triggers. */
  events?: EventOptions;
}

/** Settings of event delivery (async invocations). */
export interface EventOptions {
  /** Share of each function's (and the machine's) concurrency async work may take. @default 0.5 */
  asyncShare?: number;
  /** Added to every delivery lease beyond queue wait + timeout, ms. @default 5000 */
  leaseGraceMs?: number;
  /** Delay before the first retry (before jitter), ms. @default 1000 */
  retryBaseMs?: number;
  /** Largest async payload, bytes. @default 262144 */
  maxPayloadBytes?: number;
  /** How long an Idempotency-Key is remembered, ms. @default 86400000 */
  dedupWindowMs?: number;
}

/** A running server. */
export interface RunningServer {
  url: string;
  dataDir: string;
  adminKey: string;
  protections: Protections;
  server: Server;
  /** Graceful stop: stop accepting, finish in-flight invocations (up to `deadlineMs`), stop instances. */
  close(deadlineMs?: number): Promise<void>;
}

/** Starts the platform. */
export async function startServer(opts: ServeOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const dataDir = resolve(opts.dataDir ?? process.env.NIMBUS_HOME ?? ".nimbus");
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = new SqliteStore(join(dataDir, "nimbus.db"));
  store.startWriter();
  const protections = detectProtections(opts.noSandbox ?? process.env.NIMBUS_SANDBOX === "off");
  sweepStaleCgroups(protections);
  const registry = new Registry(store);
  await registry.load("default");
  const recorder = new Recorder(store, (err) => log(`nimbus: writing records failed: ${String(err)}`));
  // Lines an instance wrote outside any invocation (start-up, stray output) go to its function's log.
  const instanceLog = (fn: string, line: LogMeta): void => {
    const v = registry.getFunction("default", fn);
    recorder.log({
      tenant: "default",
      fn,
      version: v?.latest ?? 0,
      invocationId: null,
      t: line.t,
      level: line.level,
      msg: line.msg,
    });
  };
  const processExecutor = new ProcessExecutor({
    dataDir,
    protections,
    prewarm: opts.prewarm,
    onInstanceLog: instanceLog,
  });
  const isolateExecutor = new IsolateExecutor({
    dataDir,
    protections,
    egress: opts.isolateEgress,
    // A function's own network policy (config.network) over the server's.
    egressFor: (spec) => spec.network,
    onInstanceLog: instanceLog,
  });
  const executors: Partial<Record<ExecutorKind, Executor>> = {
    process: processExecutor,
    isolate: isolateExecutor,
  };
  const scheduler = new Scheduler({
    executors,
    reapIntervalMs: opts.reapIntervalMs,
    maxConcurrency: opts.maxConcurrency,
    memoryBudgetMB: opts.memoryBudgetMB,
    memoryReserveMB: opts.memoryReserveMB,
    queueWaitMs: opts.queueWaitMs,
    autoscaleIntervalMs: opts.autoscaleIntervalMs,
  });
  const invoker = new Invoker(registry, scheduler, recorder);
  const auth = new Auth(store);
  const adminKey = await auth.ensureAdminKey(dataDir);
  const gateway = new Gateway(invoker, auth);
  // Async events: a durable queue (its own fsync'd database file), a dispatcher that
  // delivers them through the invoker, and destinations for their outcomes.
  const ev = opts.events ?? {};
  const queue = new SqliteQueue(join(dataDir, "queue.db"), { dedupWindowMs: ev.dedupWindowMs });
  let dispatcher: Dispatcher | undefined;
  const asyncInvocations = new AsyncInvocations(queue, {
    maxPayloadBytes: ev.maxPayloadBytes,
    onEnqueued: (q) => dispatcher?.kick(q),
  });
  const destinations = new Destinations({
    async: () => asyncInvocations,
    resolve: (tenant, fn) => invoker.resolve(tenant, fn),
    log,
    egress: opts.isolateEgress,
  });
  dispatcher = new Dispatcher({
    queue,
    invoker,
    destinations,
    log,
    machineConcurrency: scheduler.maxConcurrency,
    asyncShare: ev.asyncShare,
    queueWaitMs: opts.queueWaitMs,
    leaseGraceMs: ev.leaseGraceMs,
    retryBaseMs: ev.retryBaseMs,
  });
  gateway.asyncCalls = {
    is: isAsyncCall,
    accept: (req, v, res) => acceptAsyncHttp(asyncInvocations, req, v, res),
  };
  const deployer = new Deployer({
    store,
    registry,
    executors,
    dataDir,
    onActivated: (v) => invoker.poolFor(v).ensureMin(),
  });
  const pricePlan = loadPricePlan(dataDir);

  let baseUrl = "";
  const headersTimeoutMs = opts.headersTimeoutMs ?? 10_000;
  const app = Fastify({
    logger: false,
    bodyLimit: 8 * 1024 * 1024,
    serverFactory: (handler) =>
      createServer(
        {
          // Slow clients are cut off: headers must arrive within headersTimeout, checked every second.
          headersTimeout: headersTimeoutMs,
          requestTimeout: 120_000,
          connectionsCheckingInterval: Math.min(1000, headersTimeoutMs),
          keepAliveTimeout: 5_000,
        },
        (req: IncomingMessage, res: ServerResponse) => {
          if (req.url?.startsWith("/fn/")) gateway.handle(req, res);
          else handler(req, res);
        },
      ),
  });
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Nimbus control API",
        version: "1",
        description:
          "Deploy, invoke and inspect functions. Every route except /api/v1/health and this document needs 'Authorization: Bearer <key>' (the admin key is in <data dir>/admin.key). Functions themselves answer at /fn/<name>[@<version>]/<path>.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    },
  });
  app.setErrorHandler((err: FastifyError | NimbusError, _req, reply) => {
    let e: NimbusError;
    if (err instanceof NimbusError) e = err;
    else if ((err as FastifyError).validation) {
      e = new NimbusError("NIMBUS_BAD_REQUEST", `Invalid request: ${err.message}.`);
    } else if ((err as FastifyError).statusCode === 413) {
      e = new NimbusError("NIMBUS_PAYLOAD_TOO_LARGE", err.message);
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! < 500) {
      e = new NimbusError("NIMBUS_BAD_REQUEST", err.message);
    } else {
      log(`nimbus: internal error: ${err.stack ?? err.message}`);
      e = new NimbusError("NIMBUS_INTERNAL");
    }
    void reply.code(e.status).headers(e.headers).send(e.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new NimbusError(
      "NIMBUS_NOT_FOUND",
      `No route ${req.method} ${req.url}. Functions answer at /fn/<name>; the control API is documented at /api/v1/openapi.json.`,
    );
    void reply.code(404).send(e.toBody());
  });
  app.get("/api/v1/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/", { schema: { hide: true } }, async () => ({
    name: "nimbus",
    functions: `${baseUrl}/fn/<name>`,
    api: `${baseUrl}/api/v1/openapi.json`,
  }));
  registerRoutes(app, {
    store,
    registry,
    scheduler,
    invoker,
    recorder,
    deployer,
    auth,
    protections,
    pricePlan,
    dataDir,
    baseUrl: () => baseUrl,
    warmPool: () => processExecutor.warmCounts(),
    machine: () => ({
      runningInvocations: scheduler.runningNow,
      maxConcurrency: scheduler.maxConcurrency,
      memoryUsedMB: scheduler.memoryUsed,
      memoryBudgetMB: scheduler.memoryBudgetMB,
    }),
  });
  registerEventRoutes(app, {
    auth,
    invoker,
    async: asyncInvocations,
    kick: (q) => dispatcher.kick(q),
  });
  await app.ready();
  const server = app.server;
  await app.listen({ port: opts.port ?? 7070, host: opts.host ?? "127.0.0.1" });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  baseUrl = `http://${host}:${addr.port}`;

  // Provisioned instances for every function's latest version.
  for (const f of registry.all()) {
    const v = registry.getVersion(f.tenant, f.name, f.latest);
    if (v && v.config.minInstances > 0) invoker.poolFor(v).ensureMin();
  }
  // Events accepted before a restart (or a crash) are delivered from here on.
  dispatcher.start();
  const schedules = new Schedules({ invoker, registry, async: asyncInvocations, dataDir, log });
  schedules.sync();

  let closing: Promise<void> | undefined;
  return {
    url: baseUrl,
    dataDir,
    adminKey,
    protections,
    server,
    close(deadlineMs = 10_000) {
      closing ??= (async () => {
        server.close();
        server.closeIdleConnections();
        // Async attempts finish first (they need the invoker); events not started stay queued.
        schedules.close();
        await dispatcher.close(deadlineMs);
        await Promise.race([invoker.drain(), new Promise((r) => setTimeout(r, deadlineMs))]);
        // In-flight invocations are done (or out of time): no connection is waited for any longer.
        server.closeAllConnections();
        await scheduler.close(0);
        await processExecutor.close();
        await isolateExecutor.close();
        await Promise.race([app.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
        await recorder.close();
        await destinations.close();
        await queue.close();
        await store.close();
      })();
      return closing;
    },
  };
}
