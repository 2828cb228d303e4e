/**
 * `GET /api/v1/top`: the busiest functions over the last minutes (from the rollup table,
 * not the raw records) with their live instances, for `nimbus top`.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Recorder } from "../invoker/recorder.ts";
import type { Registry } from "../invoker/registry.ts";
import { summarize } from "../observability/rollup.ts";
import type { Scheduler } from "../scheduler/pool.ts";
import type { Store } from "../store/types.ts";

/** One line of `nimbus top`. */
export interface TopRow {
  name: string;
  rps: number;
  requests: number;
  errors: number;
  errorRate: number;
  p50: number | null;
  p99: number | null;
  cold: number;
  instances: number;
  busy: number;
  queued: number;
}

/** Registers the route. */
export function registerTopRoute(
  app: FastifyInstance,
  o: {
    store: Store;
    registry: Registry;
    scheduler: Scheduler;
    recorder: Recorder;
    tenant: string;
    guard: (req: FastifyRequest) => Promise<void>;
    errors: Record<number, unknown>;
  },
): void {
  app.get<{ Querystring: { minutes?: number; limit?: number } }>(
    "/api/v1/top",
    {
      onRequest: o.guard,
      schema: {
        summary:
          "The busiest functions over the last minutes: req/s, errors, p50/p99 (ms, from the per-minute rollup), instances now",
        security: [{ bearer: [] }],
        querystring: {
          type: "object",
          properties: {
            minutes: { type: "integer", minimum: 1, maximum: 60, default: 5, description: "Window, minutes" },
            limit: { type: "integer", minimum: 1, maximum: 1000, default: 20 },
          },
        },
        response: { 200: { type: "object", additionalProperties: true }, ...o.errors },
      },
    },
    async (req) => {
      const minutes = req.query.minutes ?? 5;
      await o.recorder.flush();
      const to = Date.now() + 1;
      // Whole minutes: the current one (partial) and the `minutes - 1` before it.
      const from = to - (to % 60_000) - (minutes - 1) * 60_000;
      const windowMs = to - from;
      const rows = await o.store.rollup(o.tenant, undefined, from, to);
      const functions: TopRow[] = o.registry
        .all()
        .filter((f) => f.tenant === o.tenant)
        .map((f) => {
          const p = summarize(
            rows.filter((r) => r.fn === f.name),
            windowMs,
          );
          let idle = 0;
          let busy = 0;
          let queued = 0;
          for (const pool of o.scheduler.poolsOf(o.tenant, f.name)) {
            const st = pool.stats();
            idle += st.idle;
            busy += st.busy;
            queued += st.queued;
          }
          return {
            name: f.name,
            rps: p.rps,
            requests: p.requests,
            errors: p.errors,
            errorRate: p.errorRate,
            p50: p.p50,
            p99: p.p99,
            cold: p.cold,
            instances: idle + busy,
            busy,
            queued,
          };
        })
        .sort((a, b) => b.rps - a.rps || b.instances - a.instances || a.name.localeCompare(b.name))
        .slice(0, req.query.limit ?? 20);
      return { at: to, windowMs, functions };
    },
  );
}
