/**
 * `GET /metrics`: the Prometheus exposition, behind the configured auth.
 *
 * `auto` (the default) serves loopback callers (127.0.0.0/8, ::1) without a key, as a
 * Prometheus on the same machine scrapes, and asks everyone else for an admin API key (metrics
 * span every tenant); `key` asks everyone; `none` asks no one (for a private network only).
 */
import type { FastifyInstance } from "fastify";
import type { Auth } from "../api/auth.ts";
import type { Metrics } from "./metrics.ts";

/** Who may read `/metrics`. */
export type MetricsAuth = "auto" | "key" | "none";

/** The values `--metrics-auth` accepts. */
export const METRICS_AUTH_VALUES: readonly MetricsAuth[] = ["auto", "key", "none"];

/** Whether a peer address is loopback. */
export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  if (addr === "::1") return true;
  const v4 = addr.startsWith("::ffff:") ? addr.slice(7) : addr;
  return v4.startsWith("127.");
}

/** Options of {@link registerMetricsRoute}. */
export interface MetricsRouteOptions {
  metrics: Metrics;
  auth: Auth;
  /** @default "auto" */
  mode?: MetricsAuth;
  /** Runs before each scrape (e.g. the recorder's flush, so counts include every ended invocation). */
  beforeScrape?: () => Promise<void>;
}

/** Registers `GET /metrics` on the control API's Fastify instance. */
export function registerMetricsRoute(app: FastifyInstance, o: MetricsRouteOptions): void {
  const mode = o.mode ?? "auto";
  app.get(
    "/metrics",
    {
      schema: {
        summary: "Prometheus metrics",
        description:
          "The platform's metrics in the Prometheus text format (see the README, Observability). Loopback callers need no key by default (`--metrics-auth auto`); others need 'Authorization: Bearer <key>' with the admin scope (metrics span every tenant). `--metrics-auth key` asks every caller, `none` no caller.",
        tags: ["observability"],
        security: [{ bearer: [] }, {}],
        response: {
          200: { description: "Prometheus text exposition format 0.0.4", type: "string" },
        },
      },
    },
    async (req, reply) => {
      if (mode === "key" || (mode === "auto" && !isLoopback(req.socket.remoteAddress))) {
        await o.auth.require(req.headers.authorization, "admin");
      }
      await o.beforeScrape?.();
      const text = await o.metrics.render();
      return reply.type(o.metrics.contentType).send(text);
    },
  );
}
