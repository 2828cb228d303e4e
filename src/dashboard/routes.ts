/**
 * The web dashboard at `/dashboard`: a login form (key → server-side session), an overview
 * of every function (req/s, error rate, p50/p99, cold-start rate, cost as charts over the
 * last hour or day), and a page per function (versions, instances over time, recent
 * invocations with their logs and phase waterfall, live tail). Pages are static shells;
 * their data comes from `/dashboard/api/*` (session cookie, same origin). Time series come
 * from the rollup table, never from the raw records. Charts are uPlot, served from its
 * package's dist file as is (no build step). Every value is put in the page as text, and
 * a strict Content-Security-Policy forbids inline scripts besides.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Auth } from "../api/auth.ts";
import type { LogStreams } from "../api/logs.ts";
import { logQuery, logView } from "../api/logs.ts";
import { checkFunctionName } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import { cost, type PricePlan } from "../invoker/pricing.ts";
import type { Recorder } from "../invoker/recorder.ts";
import type { Registry } from "../invoker/registry.ts";
import { summarize, toSeries } from "../observability/rollup.ts";
import type { Scheduler } from "../scheduler/pool.ts";
import type { InvocationRecord, Store } from "../store/types.ts";
import { type Session, Sessions, sameToken } from "./sessions.ts";

/** What the dashboard needs. */
export interface DashboardContext {
  store: Store;
  registry: Registry;
  scheduler: Scheduler;
  recorder: Recorder;
  auth: Auth;
  logStreams: LogStreams;
  pricePlan: PricePlan;
  tenant: string;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The dashboard's scripts, read once at start (uPlot from its package, ours beside this file); the CSS is inlined. */
function loadStatic(): Map<string, { type: string; body: Buffer }> {
  const uplot = dirname(require.resolve("uplot/package.json"));
  const files = new Map<string, { type: string; body: Buffer }>();
  files.set("uplot.js", {
    type: "text/javascript",
    body: readFileSync(join(uplot, "dist/uPlot.iife.min.js")),
  });
  files.set("app.js", { type: "text/javascript", body: readFileSync(join(HERE, "static/app.js")) });
  return files;
}

/**
 * The pages' stylesheets (ours and uPlot's, 4 KB), inlined in every page: no stylesheet
 * request stands between the HTML and the first paint. The CSP allows exactly this text by
 * its hash, no other inline style.
 */
const INLINE_CSS = `${readFileSync(join(HERE, "static/app.css"), "utf8")}\n${readFileSync(
  join(dirname(require.resolve("uplot/package.json")), "dist/uPlot.min.css"),
  "utf8",
)}`;
const CSS_HASH = createHash("sha256").update(INLINE_CSS).digest("base64");

const CSP =
  `default-src 'none'; script-src 'self'; style-src 'self' 'sha256-${CSS_HASH}'; img-src 'self' data:; ` +
  "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">
<title>${escapeHtml(title)} · Nimbus</title>
<style>${INLINE_CSS}</style>
</head><body>${body}</body></html>`;
}

function shell(s: Session, title: string, attrs: string, main: string): string {
  return page(
    title,
    `<a class="skip" href="#main">Skip to content</a>
<header><nav aria-label="Main"><a href="/dashboard">Nimbus</a> <span aria-hidden="true">›</span> <span>${escapeHtml(title)}</span></nav>
<form method="post" action="/dashboard/logout"><input type="hidden" name="csrf" value="${escapeHtml(s.csrf)}">
<button type="submit">Log out</button></form></header>
<main id="main" ${attrs}>${main}</main>
<script src="/dashboard/static/uplot.js" defer></script><script src="/dashboard/static/app.js" defer></script>`,
  );
}

const RANGES: Record<string, { ms: number; step: number }> = {
  "1h": { ms: 3_600_000, step: 60_000 },
  "1d": { ms: 86_400_000, step: 3_600_000 },
};

/** Waterfall phases of one invocation from what its record holds (ms from its start). */
export function phases(r: InvocationRecord): { name: string; start: number; ms: number }[] {
  const out: { name: string; start: number; ms: number }[] = [];
  if (r.queueWaitMs != null)
    out.push({ name: "queue wait (async)", start: -r.queueWaitMs, ms: r.queueWaitMs });
  const acquire = r.acquireMs ?? 0;
  if (r.acquireMs != null) {
    out.push({
      name: r.coldStart ? "cold start (instance start + module load)" : "instance wait",
      start: 0,
      ms: acquire,
    });
  }
  const fb = r.firstByteMs;
  if (fb != null) {
    out.push({ name: "handler to first byte", start: acquire, ms: Math.max(0, fb - acquire) });
    out.push({ name: "response body", start: fb, ms: Math.max(0, r.durationMs - fb) });
  } else out.push({ name: "handler", start: acquire, ms: Math.max(0, r.durationMs - acquire) });
  out.push({ name: "total", start: 0, ms: r.durationMs });
  return out;
}

/** Registers the dashboard's pages, static files and JSON. */
export function registerDashboard(app: FastifyInstance, ctx: DashboardContext): Sessions {
  const sessions = new Sessions();
  const files = loadStatic();
  const secure = (req: FastifyRequest) => req.protocol === "https";

  const html = (reply: FastifyReply, status: number, body: string) =>
    reply
      .code(status)
      .headers({
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
      })
      .send(body);

  /** The session of a request, or a redirect to the login form (pages) / 401 (JSON). */
  const session = (req: FastifyRequest, reply: FastifyReply, json: boolean): Session | undefined => {
    const s = sessions.fromCookie(req.headers.cookie);
    if (s) return s;
    if (json) throw new NimbusError("NIMBUS_UNAUTHORIZED", "Log in to the dashboard at /dashboard/login.");
    void reply.code(303).header("location", "/dashboard/login").send();
    return undefined;
  };

  /**
   * A cross-site form post is refused: the browser says where it comes from (Origin, or
   * Sec-Fetch-Site), and SameSite=Strict keeps the cookie off cross-site requests anyway.
   */
  const sameOrigin = (req: FastifyRequest): boolean => {
    const site = req.headers["sec-fetch-site"];
    if (site && site !== "same-origin" && site !== "none") return false;
    const origin = req.headers.origin;
    if (origin && origin !== "null") {
      try {
        return new URL(origin).host === req.headers.host;
      } catch {
        return false;
      }
    }
    return true;
  };

  const form = (req: FastifyRequest): URLSearchParams => {
    const b = req.body;
    return new URLSearchParams(Buffer.isBuffer(b) ? b.toString("utf8") : typeof b === "string" ? b : "");
  };

  const loginPage = (error?: string) =>
    page(
      "Log in",
      `<main id="main" class="login"><h1>Nimbus dashboard</h1>
<form method="post" action="/dashboard/login" autocomplete="off">
${error ? `<p role="alert" class="alert">${escapeHtml(error)}</p>` : ""}
<label for="key">API key</label>
<input id="key" name="key" type="password" required autofocus aria-describedby="key-help">
<p id="key-help" class="help">A key with the read scope (the admin key is in &lt;data dir&gt;/admin.key). It is kept on the server, in your session.</p>
<button type="submit">Log in</button></form></main>`,
    );

  app.get(
    "/dashboard/login",
    { schema: { summary: "Dashboard login form (HTML)", tags: ["dashboard"] } },
    async (_req, reply) => html(reply, 200, loginPage()),
  );

  app.post(
    "/dashboard/login",
    {
      schema: {
        summary:
          "Log in: form field 'key'; sets an HttpOnly SameSite=Strict session cookie and answers 303 to /dashboard",
        tags: ["dashboard"],
      },
      bodyLimit: 4096,
    },
    async (req, reply) => {
      if (!sameOrigin(req)) return html(reply, 403, loginPage("Cross-site login refused."));
      const key = form(req).get("key")?.trim() ?? "";
      const rec = key ? await ctx.auth.verify(`Bearer ${key}`) : undefined;
      if (!rec || !(rec.scopes.includes("admin") || rec.scopes.includes("read"))) {
        return html(reply, 401, loginPage("That key is not valid, or lacks the read scope."));
      }
      const s = sessions.create(rec);
      req.log.info({ session: s.id.slice(0, 8) }, "dashboard login");
      return reply
        .code(303)
        .header("set-cookie", sessions.cookie(s, secure(req)))
        .header("location", "/dashboard")
        .send();
    },
  );

  app.post(
    "/dashboard/logout",
    {
      schema: {
        summary: "Log out: form field 'csrf' (the session's token, in every page); ends the session",
        tags: ["dashboard"],
      },
      bodyLimit: 4096,
    },
    async (req, reply) => {
      const s = sessions.fromCookie(req.headers.cookie);
      const token = form(req).get("csrf") ?? "";
      if (!s || !sameOrigin(req) || !sameToken(token, s.csrf)) {
        return html(
          reply,
          403,
          page("Refused", "<main><p>Logout refused: stale or cross-site form.</p></main>"),
        );
      }
      sessions.delete(s.id);
      return reply
        .code(303)
        .header("set-cookie", sessions.cookie(undefined, secure(req)))
        .header("location", "/dashboard/login")
        .send();
    },
  );

  app.get<{ Params: { file: string } }>(
    "/dashboard/static/:file",
    { schema: { hide: true } },
    async (req, reply) => {
      const f = files.get(req.params.file);
      if (!f) throw new NimbusError("NIMBUS_NOT_FOUND", "No such dashboard file.");
      return reply
        .headers({
          "content-type": `${f.type}; charset=utf-8`,
          "cache-control": "public, max-age=3600",
          "x-content-type-options": "nosniff",
        })
        .send(f.body);
    },
  );

  app.get(
    "/dashboard",
    { schema: { summary: "Dashboard: functions overview (HTML; session cookie)", tags: ["dashboard"] } },
    async (req, reply) => {
      const s = session(req, reply, false);
      if (!s) return reply;
      return html(
        reply,
        200,
        shell(
          s,
          "Functions",
          'data-page="overview"',
          `<h1>Functions</h1>
<div class="range" role="group" aria-label="Time range"><button type="button" data-range="1h" aria-pressed="true">Last hour</button><button type="button" data-range="1d" aria-pressed="false">Last day</button></div>
<section aria-labelledby="t-fns"><h2 id="t-fns">Functions</h2><table id="functions"><caption class="sr">Per function, over the range</caption>
<thead><tr><th scope="col">Function</th><th scope="col">req/s</th><th scope="col">Error rate</th><th scope="col">p50</th><th scope="col">p99</th><th scope="col">Cold starts</th><th scope="col">Instances</th><th scope="col">Cost</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="t-charts"><h2 id="t-charts">Charts</h2><div class="charts">
<figure><figcaption id="c-rps">Requests per second</figcaption><div class="chart" data-metric="rps" role="img" aria-labelledby="c-rps"></div></figure>
<figure><figcaption id="c-err">Error rate</figcaption><div class="chart" data-metric="errorRate" role="img" aria-labelledby="c-err"></div></figure>
<figure><figcaption id="c-p99">p99 duration (ms)</figcaption><div class="chart" data-metric="p99" role="img" aria-labelledby="c-p99"></div></figure>
<figure><figcaption id="c-p50">p50 duration (ms)</figcaption><div class="chart" data-metric="p50" role="img" aria-labelledby="c-p50"></div></figure>
<figure><figcaption id="c-cold">Cold-start rate</figcaption><div class="chart" data-metric="coldRate" role="img" aria-labelledby="c-cold"></div></figure>
<figure><figcaption id="c-cost">Cost (USD)</figcaption><div class="chart" data-metric="cost" role="img" aria-labelledby="c-cost"></div></figure>
</div></section>`,
        ),
      );
    },
  );

  app.get<{ Params: { name: string } }>(
    "/dashboard/fn/:name",
    { schema: { summary: "Dashboard: one function (HTML; session cookie)", tags: ["dashboard"] } },
    async (req, reply) => {
      const s = session(req, reply, false);
      if (!s) return reply;
      checkFunctionName(req.params.name);
      const name = req.params.name;
      if (!ctx.registry.getFunction(ctx.tenant, name))
        throw new NimbusError("NIMBUS_FN_NOT_FOUND", `No function named '${name}'.`);
      return html(
        reply,
        200,
        shell(
          s,
          name,
          `data-page="fn" data-fn="${escapeHtml(name)}"`,
          `<h1>Function <code>${escapeHtml(name)}</code></h1>
<div class="range" role="group" aria-label="Time range"><button type="button" data-range="1h" aria-pressed="true">Last hour</button><button type="button" data-range="1d" aria-pressed="false">Last day</button></div>
<section aria-labelledby="t-charts"><h2 id="t-charts">Activity</h2><div class="charts">
<figure><figcaption id="c-rps">Requests per second</figcaption><div class="chart" data-metric="rps" role="img" aria-labelledby="c-rps"></div></figure>
<figure><figcaption id="c-err">Error rate</figcaption><div class="chart" data-metric="errorRate" role="img" aria-labelledby="c-err"></div></figure>
<figure><figcaption id="c-lat">Duration p50 / p99 (ms)</figcaption><div class="chart" data-metric="latency" role="img" aria-labelledby="c-lat"></div></figure>
<figure><figcaption id="c-inst">Instances</figcaption><div class="chart" data-metric="instances" role="img" aria-labelledby="c-inst"></div></figure>
</div><p id="usage"></p></section>
<section aria-labelledby="t-versions"><h2 id="t-versions">Versions</h2><table id="versions"><thead><tr><th scope="col">Version</th><th scope="col">Executor</th><th scope="col">Memory</th><th scope="col">Size</th><th scope="col">Created</th><th scope="col">Latest</th></tr></thead><tbody></tbody></table></section>
<section aria-labelledby="t-inv"><h2 id="t-inv">Recent invocations</h2>
<label for="status">Status</label> <select id="status"><option value="">All</option><option value="ok">Succeeded</option><option value="error">Failed</option></select>
<table id="invocations"><thead><tr><th scope="col">Start</th><th scope="col">Id</th><th scope="col">Status</th><th scope="col">Duration</th><th scope="col">Cold</th><th scope="col">Trigger</th></tr></thead><tbody></tbody></table>
<div id="invocation" aria-live="polite"></div></section>
<section aria-labelledby="t-tail"><h2 id="t-tail">Live tail</h2><p id="tail-state" role="status">Connecting…</p><ol id="tail" class="log"></ol></section>`,
        ),
      );
    },
  );

  // ---- JSON for the pages (session cookie) ----
  const range = (r: string | undefined) => RANGES[r ?? "1h"] ?? RANGES["1h"]!;

  app.get<{ Querystring: { range?: string } }>(
    "/dashboard/api/overview",
    {
      schema: {
        summary: "Dashboard data: per-function series and totals (session cookie)",
        tags: ["dashboard"],
      },
    },
    async (req, reply) => {
      session(req, reply, true);
      const rg = range(req.query.range);
      const to = Date.now() + 1;
      const from = to - rg.ms;
      await ctx.recorder.flush();
      const rows = await ctx.store.rollup(ctx.tenant, undefined, from, to);
      const fns = ctx.registry
        .all()
        .filter((f) => f.tenant === ctx.tenant)
        .map((f) => f.name)
        .sort();
      const functions = fns.map((name) => {
        const mine = rows.filter((r) => r.fn === name);
        const series = toSeries(mine, from, to, rg.step).map((p) => ({
          ...p,
          cost: cost(ctx.pricePlan, p.requests, p.gbSeconds),
        }));
        const total = summarize(mine, rg.ms);
        let instances = 0;
        for (const p of ctx.scheduler.poolsOf(ctx.tenant, name)) instances += p.stats().idle + p.stats().busy;
        return {
          name,
          instances,
          summary: {
            rps: total.requests / (rg.ms / 1000),
            errorRate: total.errorRate,
            p50: total.p50,
            p99: total.p99,
            coldRate: total.coldRate,
            requests: total.requests,
            cost: cost(ctx.pricePlan, total.requests, total.gbSeconds),
          },
          series,
        };
      });
      return { from, to, stepMs: rg.step, currency: ctx.pricePlan.currency, functions };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { range?: string; status?: string } }>(
    "/dashboard/api/fn/:name",
    {
      schema: {
        summary: "Dashboard data: a function's series, usage, versions and invocations (session cookie)",
        tags: ["dashboard"],
      },
    },
    async (req, reply) => {
      session(req, reply, true);
      checkFunctionName(req.params.name);
      const fn = ctx.registry.getFunction(ctx.tenant, req.params.name);
      if (!fn) throw new NimbusError("NIMBUS_FN_NOT_FOUND", `No function named '${req.params.name}'.`);
      const rg = range(req.query.range);
      const to = Date.now() + 1;
      const from = to - rg.ms;
      await ctx.recorder.flush();
      const rows = await ctx.store.rollup(ctx.tenant, fn.name, from, to);
      const series = toSeries(rows, from, to, rg.step);
      const total = summarize(rows, rg.ms);
      const outcome =
        req.query.status === "ok" || req.query.status === "error" ? req.query.status : undefined;
      const versions = (await ctx.store.listVersions(ctx.tenant, fn.name)).map((v) => ({
        version: v.version,
        executor: v.executor,
        memory: v.config.memory,
        sizeBytes: v.sizeBytes,
        createdAt: v.createdAt,
        latest: v.version === fn.latest,
      }));
      return {
        name: fn.name,
        stepMs: rg.step,
        series,
        usage: {
          ...total,
          cost: cost(ctx.pricePlan, total.requests, total.gbSeconds),
          currency: ctx.pricePlan.currency,
        },
        versions,
        invocations: await ctx.store.listInvocations(ctx.tenant, fn.name, 50, outcome),
      };
    },
  );

  app.get<{ Params: { name: string; id: string } }>(
    "/dashboard/api/fn/:name/invocations/:id",
    {
      schema: {
        summary: "Dashboard data: one invocation, its phases and log lines (session cookie)",
        tags: ["dashboard"],
      },
    },
    async (req, reply) => {
      session(req, reply, true);
      checkFunctionName(req.params.name);
      await ctx.recorder.flush();
      const r = await ctx.store.getInvocation(ctx.tenant, req.params.id.slice(0, 64));
      if (!r || r.fn !== req.params.name) {
        throw new NimbusError(
          "NIMBUS_INVOCATION_NOT_FOUND",
          `No invocation '${req.params.id}' of '${req.params.name}'.`,
        );
      }
      const lines = await ctx.store.listLogs(logQuery(ctx.tenant, r.fn, { invocation: r.id, limit: 500 }));
      return { invocation: r, phases: phases(r), logs: lines.map(logView) };
    },
  );

  app.get<{ Params: { name: string }; Querystring: { limit?: number } }>(
    "/dashboard/api/fn/:name/logs",
    {
      schema: {
        summary: "Dashboard live tail: SSE of a function's new log lines (session cookie)",
        tags: ["dashboard"],
      },
    },
    async (req, reply) => {
      session(req, reply, true);
      checkFunctionName(req.params.name);
      if (!ctx.registry.getFunction(ctx.tenant, req.params.name)) {
        throw new NimbusError("NIMBUS_FN_NOT_FOUND", `No function named '${req.params.name}'.`);
      }
      await ctx.logStreams.answer(req, reply, ctx.tenant, req.params.name, { limit: 50 });
    },
  );

  return sessions;
}
