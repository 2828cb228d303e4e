/**
 * `nimbus serve`: composes store, executors, scheduler, invoker, gateway and control API
 * into one HTTP server (data plane on `/fn/…`, control API on `/api/v1/…`).
 */
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyBaseLogger, type FastifyError } from "fastify";
import { Auth } from "./api/auth.ts";
import { Deployer } from "./api/deploy.ts";
import { registerEventRoutes } from "./api/events.ts";
import { registerQueueRoutes } from "./api/queues.ts";
import { registerTriggerRoutes } from "./api/triggers.ts";
import { LogStreams } from "./api/logs.ts";
import { registerRoutes } from "./api/routes.ts";
import { registerDashboard } from "./dashboard/routes.ts";
import { DEFAULT_LIMITS, type ServerLimits } from "./build/config.ts";
import { NimbusError } from "./errors.ts";
import { AsyncInvocations } from "./events/async.ts";
import { Destinations } from "./events/destinations.ts";
import { Dispatcher } from "./events/dispatcher.ts";
import { acceptAsyncHttp, isAsyncCall } from "./events/http.ts";
import { Outcomes } from "./events/outcomes.ts";
import { Schedules } from "./events/schedules.ts";
import { Triggers } from "./triggers/manager.ts";
import { checkFunctionNetwork, checkGrants, serverCeiling } from "./executors/egress/ceiling.ts";
import { type EgressPolicy, IsolateExecutor } from "./executors/isolate/executor.ts";
import { ProcessExecutor } from "./executors/process/executor.ts";
import { makeRunDir } from "./executors/process/launch.ts";
import {
  checkListen,
  checkPrivileges,
  type SandboxMode,
  sandboxMode,
  sandboxWarning,
} from "./executors/process/mode.ts";
import { detectProtections, type Protections, sweepStaleCgroups } from "./executors/process/sandbox.ts";
import type { Executor, ExecutorKind } from "./executors/types.ts";
import { Admission } from "./gateway/admission.ts";
import { Gateway } from "./gateway/gateway.ts";
import { Invoker } from "./invoker/invoker.ts";
import { LogQuota, type LogQuotaOptions } from "./invoker/log-quota.ts";
import { loadPricePlan } from "./invoker/pricing.ts";
import { Recorder } from "./invoker/recorder.ts";
import { Registry } from "./invoker/registry.ts";
import { type MetricsAuth, registerMetricsRoute } from "./observability/endpoint.ts";
import { Metrics } from "./observability/metrics.ts";
import { attachMetrics, createTracer, schedulerObserver } from "./observability/platform.ts";
import { SqliteQueue } from "./queue/sqlite/queue.ts";
import { QueueConsumers } from "./queues/consumer.ts";
import type { QueueSender } from "./queues/producer.ts";
import { NamedQueues } from "./queues/service.ts";
import type { LogMeta } from "./runtime/protocol.ts";
import { createLogger, type Logger, messageLog, requestId, requestLevel } from "./observability/log.ts";
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
  /**
   * Turn the sandbox off on purpose: functions then run in local development mode
   * (loopback only). @default false
   */
  noSandbox?: boolean;
  /**
   * Run without the sandbox even beyond loopback (`--insecure-no-sandbox`, NIMBUS_SANDBOX=off).
   * @default false
   */
  insecureNoSandbox?: boolean;
  /**
   * Operator grants: non-public addresses, CIDR ranges or host names functions may reach
   * (`--egress-allow`). Everything else non-public is refused to every function.
   * @default [] (public addresses only)
   */
  egressAllow?: string[];
  /** The bwrap binary. @default $NIMBUS_BWRAP, else bwrap on $PATH */
  bwrapPath?: string;
  /**
   * Egress rules for `fetch` from isolate functions.
   * @default { default: "allow", allowPrivate: false } (public internet only)
   */
  isolateEgress?: EgressPolicy;
  /**
   * Isolate executor: how functions that do not say (config `isolation`) are isolated from
   * their tenant's other functions: `"isolate"` (an isolate each) or `"context"` (a context
   * each in a shared isolate: ~0.3 MB instead of ~2 MB, shared heap limit and thread).
   * @default "isolate"
   */
  isolation?: "isolate" | "context";
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
  /**
   * Connections open at once, all callers together; past it a new connection gets a 503
   * (NIMBUS_OVERLOADED) with Retry-After.
   * @default 16384
   */
  maxConnections?: number;
  /**
   * Request body bytes all requests together may hold in memory; past it a request gets a
   * 503 (NIMBUS_OVERLOADED) with Retry-After.
   * @default 268435456 (256 MB)
   */
  maxBufferedBodyBytes?: number;
  /** Log quotas per invocation and per function (see LogQuotaOptions for the defaults). */
  logQuota?: LogQuotaOptions;
  /** Log lines older than this many days are deleted. @default 7 */
  logRetentionDays?: number;
  /** Log characters kept per function; the oldest lines go first past it. @default 268435456 (256 MB) */
  logMaxBytesPerFunction?: number;
  /** How often log retention runs, ms. @default 600000 */
  logPruneIntervalMs?: number;
  /** Live log streams (`logs --follow`, the dashboard's tail). */
  logStreams?: {
    /** Streams open at once. @default 256 */
    max?: number;
    /** Bytes one stream may have waiting for its client before it is cut off. @default 1048576 */
    bufferBytes?: number;
  };
  /** Per-minute rollup rows older than this fold into hourly rows, ms. @default 172800000 (48 h) */
  rollupMinuteKeepMs?: number;
  /** Hourly rollup rows older than this are deleted, ms. @default 7776000000 (90 days) */
  rollupHourKeepMs?: number;
  /** Autoscaler tick, ms (0 turns pre-scaling off). @default 1000 */
  autoscaleIntervalMs?: number;
  /** Maximums a function's config may ask for (`--max-*` flags). @default DEFAULT_LIMITS */
  limits?: Partial<ServerLimits>;
  /**
   * Freeze idle instances (cgroup freezer) so that no code runs between invocations.
   * Off only for debugging (`--no-freeze`, NIMBUS_FREEZE=off). @default true
   */
  freeze?: boolean;
  /** Where platform messages go. @default the platform logger ({@link ServeOptions.logger}) */
  log?: (msg: string) => void;
  /** The platform logger (pino). @default JSON on stderr, pretty when stderr is a terminal */
  logger?: Logger;
  /** Async events, queues and triggers. */
  events?: EventOptions;
  /**
   * Who may read `GET /metrics` (`--metrics-auth`): `auto` serves loopback callers without a
   * key and asks others for an admin key; `key` asks everyone; `none` no one.
   * @default "auto"
   */
  metricsAuth?: MetricsAuth;
  /**
   * OTLP/HTTP collector to export traces to (`--otlp-endpoint`, e.g. `http://127.0.0.1:4318`;
   * `/v1/traces` is added unless the URL has a path). Tracing is off without it.
   */
  otlpEndpoint?: string;
  /** Collect Prometheus metrics (off only to measure what they cost). @default true */
  metrics?: boolean;
}

/** Settings of event delivery (async invocations). */
export interface EventOptions {
  /** Share of each function's (and the machine's) concurrency async work may take. @default 0.5 */
  asyncShare?: number;
  /** Added to every delivery lease beyond queue wait + timeout, ms. @default 5000 */
  leaseGraceMs?: number;
  /** Delay before the first retry (before jitter), ms. @default 1000 */
  retryBaseMs?: number;
  /**
   * How long before each schedule tick an instance is started (and kept, whatever the
   * function's idle timeout) so scheduled runs are not cold starts; 0 turns pre-warm off.
   * @default 5000
   */
  schedulePrewarmMs?: number;
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
  /** Whether functions are sandboxed, or run in local development / insecure mode. */
  mode: SandboxMode;
  /** What is said at start, in info and on every deploy when not sandboxed. */
  warning: string | undefined;
  /** Idle instances are frozen. */
  freezing: boolean;
  server: Server;
  /** The gateway's caps on connections and buffered request bytes (and their counters). */
  admission: Admission;
  /** The platform's Prometheus metrics (undefined when turned off). */
  metrics: Metrics | undefined;
  /** Graceful stop: stop accepting, finish in-flight invocations (up to `deadlineMs`), stop instances. */
  close(deadlineMs?: number): Promise<void>;
}

/** Starts the platform. */
export async function startServer(opts: ServeOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger();
  const log = opts.log ?? messageLog(logger);
  const dataDir = resolve(opts.dataDir ?? process.env.NIMBUS_HOME ?? ".nimbus");
  const envOff = process.env.NIMBUS_SANDBOX === "off";
  const insecure = (opts.insecureNoSandbox ?? false) || envOff;
  const protections = detectProtections({
    disable: (opts.noSandbox ?? false) || insecure,
    bwrapPath: opts.bwrapPath,
  });
  const mode = sandboxMode(protections, insecure);
  const warning = sandboxWarning(mode);
  // Fail closed before anything is started: no sandbox means loopback only.
  checkListen(mode, opts.host ?? "127.0.0.1");
  checkPrivileges(protections, insecure);
  const grants = opts.egressAllow ?? [];
  checkGrants(grants);
  const ceiling = serverCeiling(grants);
  // The data directory (store, admin key, code) is the platform's alone: instances run as
  // another uid and cannot enter it.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (process.getuid?.() === 0) chownSync(dataDir, 0, 0);
  chmodSync(dataDir, 0o700);
  if (existsSync(join(dataDir, "admin.key"))) chmodSync(join(dataDir, "admin.key"), 0o600);
  const runDir = makeRunDir();
  const store = new SqliteStore(join(dataDir, "nimbus.db"));
  store.startWriter();
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  // Freezing needs the freezer controller; without it idle instances keep their CPU quota.
  const freeze = (opts.freeze ?? process.env.NIMBUS_FREEZE !== "off") && protections.freezer;
  sweepStaleCgroups(protections);
  const registry = new Registry(store);
  await registry.load("default");
  const recorder = new Recorder(store, (err) => log(`nimbus: writing records failed: ${String(err)}`));
  recorder.onSystemError = (r) =>
    logger.warn(
      { invocationId: r.id, fn: r.fn, version: r.version, trigger: r.trigger, code: r.errorCode },
      "invocation failed on the platform side",
    );
  const logQuota = new LogQuota(opts.logQuota);
  // Lines an instance wrote outside any invocation (start-up, stray output) go to its function's
  // log, within the function's log quota.
  const instanceLog = (fn: string, line: LogMeta): void => {
    const v = registry.getFunction("default", fn);
    const key = `default/${fn}`;
    const now = Date.now();
    const msg = logQuota.cut(typeof line.msg === "string" ? line.msg : String(line.msg));
    if (logQuota.admit(key, msg.length, now) !== "ok") return;
    const keep = (level: LogMeta["level"], t: number, text: string): void =>
      recorder.log({
        tenant: "default",
        fn,
        version: v?.latest ?? 0,
        invocationId: null,
        t,
        level,
        msg: text,
      });
    const dropped = logQuota.takeDropped(key);
    if (dropped > 0) keep("warn", now, logQuota.marker(dropped, "function"));
    keep(line.level, line.t, msg);
  };
  const processExecutor = new ProcessExecutor({
    dataDir,
    runDir,
    egressCeiling: ceiling,
    protections,
    prewarm: opts.prewarm,
    freeze,
    onInstanceLog: instanceLog,
    onQueueSend: (fn, meta, payload) => functionSend(fn, meta, payload),
  });
  const isolateExecutor = new IsolateExecutor({
    dataDir,
    runDir,
    egressCeiling: ceiling,
    protections,
    egress: opts.isolateEgress,
    // A function's own network policy (config.network) over the server's.
    egressFor: (spec) => spec.network,
    isolation: opts.isolation,
    isolationFor: (spec) => spec.isolation,
    freeze,
    onInstanceLog: instanceLog,
    onQueueSend: (fn, meta, payload) => functionSend(fn, meta, payload),
  });
  const executors: Partial<Record<ExecutorKind, Executor>> = {
    process: processExecutor,
    isolate: isolateExecutor,
  };
  const metrics = (opts.metrics ?? true) ? new Metrics() : undefined;
  const scheduler = new Scheduler({
    observer: metrics && schedulerObserver(metrics),
    executors,
    reapIntervalMs: opts.reapIntervalMs,
    maxConcurrency: opts.maxConcurrency,
    memoryBudgetMB: opts.memoryBudgetMB,
    memoryReserveMB: opts.memoryReserveMB,
    queueWaitMs: opts.queueWaitMs,
    autoscaleIntervalMs: opts.autoscaleIntervalMs,
  });
  const invoker = new Invoker(registry, scheduler, recorder, logQuota, limits);
  invoker.tracer = opts.otlpEndpoint ? createTracer(opts.otlpEndpoint, metrics, log) : undefined;
  // Instances over time for the dashboard: sampled at flush time, into the rollup.
  recorder.sampler = () => {
    const t = Date.now();
    return registry.all().map((f) => {
      let instances = 0;
      for (const p of scheduler.poolsOf(f.tenant, f.name)) {
        const st = p.stats();
        instances += st.idle + st.busy;
      }
      return { tenant: f.tenant, fn: f.name, t, instances };
    });
  };
  const auth = new Auth(store);
  const adminKey = await auth.ensureAdminKey(dataDir);
  const admission = new Admission({
    maxConnections: opts.maxConnections,
    maxBufferedBodyBytes: opts.maxBufferedBodyBytes,
  });
  const gateway = new Gateway(invoker, auth, "default", admission);
  gateway.onRefused = metrics && ((code) => metrics.refused(code));
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
    egress: ceiling,
  });
  const outcomes = new Outcomes(queue);
  dispatcher = new Dispatcher({
    queue,
    onTerminal: (id, outcome) => outcomes.settled(id, outcome),
    invoker,
    destinations,
    log,
    machineConcurrency: scheduler.maxConcurrency,
    asyncShare: ev.asyncShare,
    queueWaitMs: opts.queueWaitMs,
    leaseGraceMs: ev.leaseGraceMs,
    retryBaseMs: ev.retryBaseMs,
  });
  // Named queues: sends (API, producer bindings) stored in the same durable queue; consumers
  // drain them in batches with per-message outcomes.
  let consumers: QueueConsumers | undefined;
  const named = new NamedQueues({ store, queue, onEnqueued: (k) => consumers?.kick(k) });
  consumers = new QueueConsumers({
    queue,
    invoker,
    registry,
    named,
    log,
    queueWaitMs: opts.queueWaitMs,
    leaseGraceMs: ev.leaseGraceMs,
    retryBaseMs: ev.retryBaseMs,
  });
  const functionSend: QueueSender = (fn, meta, payload) =>
    named.sendFromFunction(
      fn.tenant,
      fn.functionName,
      registry.getVersion(fn.tenant, fn.functionName, fn.version)?.config.queues?.producers ?? {},
      meta,
      payload,
    );
  if (metrics) {
    attachMetrics(metrics, {
      recorder,
      scheduler,
      queue,
      logQuota,
      admission,
      isolates: isolateExecutor,
      processes: processExecutor,
    });
  }
  // MQTT/NATS triggers: each batch becomes a durable async event (kind "queue").
  const triggers = new Triggers({ registry, async: asyncInvocations, outcomes, log });
  gateway.asyncCalls = {
    is: isAsyncCall,
    accept: (req, v, res) => acceptAsyncHttp(asyncInvocations, req, v, res),
  };
  // Created once the server listens; a deploy re-reads schedules at once (not at the next poll).
  let schedules: Schedules | undefined;
  const deployer = new Deployer({
    store,
    registry,
    executors,
    dataDir,
    limits,
    onActivated: (v) => {
      invoker.poolFor(v).ensureMin();
      setImmediate(() => {
        triggers.sync();
        consumers.sync();
        schedules?.sync();
      });
    },
    checkConfig: (c) => checkFunctionNetwork(c.network, grants),
  });
  const pricePlan = loadPricePlan(dataDir);

  let baseUrl = "";
  const headersTimeoutMs = opts.headersTimeoutMs ?? 10_000;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One line per request at the end (below), not Fastify's two.
    disableRequestLogging: true,
    requestIdHeader: false,
    genReqId: requestId,
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
          if (admission.refused(req.socket)) return;
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
      _req.log.error({ err }, "internal error");
      e = new NimbusError("NIMBUS_INTERNAL");
    }
    void reply.code(e.status).headers(e.headers).send(e.toBody());
  });
  // Every answer names its request id; one log line per request ties the id to what happened.
  app.addHook("onRequest", async (req, reply) => {
    void reply.header("x-request-id", req.id);
  });
  app.addHook("onResponse", async (req, reply) => {
    const level = requestLevel(req.method, reply.statusCode);
    if (!logger.isLevelEnabled(level)) return;
    req.log[level](
      {
        method: req.method,
        url: req.url.split("?")[0],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      "request",
    );
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
  const logStreams = new LogStreams({
    store,
    recorder,
    maxStreams: opts.logStreams?.max,
    bufferBytes: opts.logStreams?.bufferBytes,
  });
  registerRoutes(app, {
    store,
    registry,
    scheduler,
    invoker,
    recorder,
    logStreams,
    deployer,
    auth,
    protections,
    sandbox: { mode, warning, egressAllow: grants },
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
  registerDashboard(app, {
    store,
    registry,
    scheduler,
    recorder,
    auth,
    logStreams,
    pricePlan,
    tenant: "default",
  });
  registerEventRoutes(app, {
    auth,
    invoker,
    async: asyncInvocations,
    kick: (q) => dispatcher.kick(q),
  });
  registerTriggerRoutes(app, { auth, triggers });
  registerQueueRoutes(app, { auth, named, consumers });
  if (metrics) {
    registerMetricsRoute(app, {
      metrics,
      auth,
      mode: opts.metricsAuth,
      beforeScrape: () => recorder.flush(),
    });
  }
  await app.ready();
  const server = app.server;
  admission.attach(server);
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
  consumers.start();
  schedules = new Schedules({
    invoker,
    registry,
    async: asyncInvocations,
    dataDir,
    log,
    prewarmMs: ev.schedulePrewarmMs,
  });
  schedules.sync();
  triggers.sync();

  // Log retention: lines past the retention period, and the oldest past a function's size
  // cap, are deleted now and every 10 minutes (on the record writer's thread).
  const retentionMs = (opts.logRetentionDays ?? 7) * 86_400_000;
  const maxLogChars = opts.logMaxBytesPerFunction ?? 256 * 1024 * 1024;
  let pruning = false;
  const prune = (): void => {
    logQuota.sweep(Date.now());
    if (pruning) return;
    pruning = true;
    recorder
      .flush()
      .then(() => store.pruneLogs(Date.now() - retentionMs, maxLogChars))
      .then(() =>
        store.compactRollup(
          Date.now(),
          opts.rollupMinuteKeepMs ?? 48 * 3_600_000,
          opts.rollupHourKeepMs ?? 90 * 86_400_000,
        ),
      )
      .catch((err: unknown) => log(`nimbus: log retention failed: ${String(err)}`))
      .finally(() => {
        pruning = false;
      });
  };
  prune();
  const pruner = setInterval(prune, opts.logPruneIntervalMs ?? 600_000);
  pruner.unref();

  let closing: Promise<void> | undefined;
  return {
    url: baseUrl,
    dataDir,
    adminKey,
    protections,
    mode,
    warning,
    freezing: freeze,
    server,
    admission,
    metrics,
    close(deadlineMs = 10_000) {
      closing ??= (async () => {
        clearInterval(pruner);
        server.close();
        server.closeIdleConnections();
        // Async attempts finish first (they need the invoker); events not started stay queued.
        schedules.close();
        await triggers.close();
        await dispatcher.close(deadlineMs);
        await consumers.close(deadlineMs);
        await Promise.race([invoker.drain(), new Promise((r) => setTimeout(r, deadlineMs))]);
        // In-flight invocations are done (or out of time): no connection is waited for any longer.
        server.closeAllConnections();
        await scheduler.close(0);
        await processExecutor.close();
        await isolateExecutor.close();
        await Promise.race([app.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
        await recorder.close();
        metrics?.close();
        await invoker.tracer?.close();
        await destinations.close();
        await queue.close();
        await store.close();
        rmSync(runDir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}
