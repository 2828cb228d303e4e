/**
 * Wires the platform's metrics to their sources: the recorder's batches (per-invocation
 * metrics), the scheduler's instance starts and exits (cold-start phases, kills), and what is
 * read at scrape time (instances, queues, log drops, connection refusals, RSS).
 */
import { NimbusError } from "../errors.ts";
import type { IsolateExecutor } from "../executors/isolate/executor.ts";
import type { Admission } from "../gateway/admission.ts";
import type { LogQuota } from "../invoker/log-quota.ts";
import type { Recorder } from "../invoker/recorder.ts";
import type { Queue } from "../queue/types.ts";
import type { SchedulerObserver, Scheduler } from "../scheduler/pool.ts";
import type { Metrics, QueueSnapshot } from "./metrics.ts";
import { OtlpExporter, Tracer } from "./tracing.ts";

/** The scheduler observer that feeds cold-start phases and kills into `metrics`. */
export function schedulerObserver(metrics: Metrics): SchedulerObserver {
  return {
    started(executor, instance) {
      const p = instance.startPhases;
      if (!p) return;
      metrics.observeColdStart(executor, {
        sandbox: p.sandboxMs,
        load: p.loadMs,
        total: p.sandboxMs + p.loadMs,
      });
    },
    exited(reason) {
      if (reason) metrics.killed(reason.code);
    },
  };
}

/** What {@link attachMetrics} reads. */
export interface MetricSources {
  recorder: Recorder;
  scheduler: Scheduler;
  queue: Queue;
  logQuota: LogQuota;
  admission: Admission;
  isolates: IsolateExecutor;
  /** The process executor's runtimes (their RSS). */
  processes?: { pids(): number[] };
}

/** Splits a queue name (`fn/<tenant>/<name>`, `q/<tenant>/<name>`) into kind and name. */
export function queueLabels(queue: string): Pick<QueueSnapshot, "kind" | "fn"> | undefined {
  const [prefix, , name] = queue.split("/", 3);
  if (!name) return undefined;
  if (prefix === "fn") return { kind: "async", fn: name };
  if (prefix === "q") return { kind: "queue", fn: name };
  return undefined;
}

/** Feeds `metrics` from the platform's parts. */
export function attachMetrics(metrics: Metrics, s: MetricSources): void {
  s.recorder.onRecords = (records) => metrics.observeInvocations(records);
  metrics.setSources({
    instances: () => s.scheduler.allStats(),
    queues: async () => {
      const now = Date.now();
      const out: QueueSnapshot[] = [];
      for (const o of (await s.queue.overview?.()) ?? []) {
        const l = queueLabels(o.queue);
        if (!l) continue;
        out.push({
          ...l,
          ready: o.ready,
          delayed: o.delayed,
          leased: o.leased,
          dead: o.dead,
          oldestAgeSeconds: o.oldestAt === undefined ? 0 : Math.max(0, now - o.oldestAt) / 1000,
        });
      }
      return out;
    },
    logLinesDropped: () => s.logQuota.droppedTotal,
    refusedConnections: () => s.admission.refusedConnections,
    pids: () => [
      ...Object.values(s.isolates.hostStats()).map((h) => ({ kind: "isolate_host" as const, pid: h.pid })),
      ...(s.processes?.pids() ?? []).map((pid) => ({ kind: "instance" as const, pid })),
    ],
  });
}

/**
 * The tracer exporting to `endpoint` (`--otlp-endpoint`); dropped spans are counted in
 * `metrics`, export failures logged (the first, then one in 100).
 */
export function createTracer(
  endpoint: string,
  metrics: Metrics | undefined,
  log: (msg: string) => void,
): Tracer {
  let failures = 0;
  let exporter: OtlpExporter;
  try {
    exporter = new OtlpExporter({
      endpoint,
      onDrop: (n) => metrics?.spansDropped.inc(n),
      onError: (err) => {
        if (failures++ % 100 === 0)
          log(`nimbus: exporting traces to ${endpoint} failed (${failures} times so far): ${String(err)}`);
      },
    });
  } catch (err) {
    throw new NimbusError("NIMBUS_BAD_REQUEST", (err as Error).message);
  }
  return new Tracer(exporter);
}
