/**
 * `npm run bench -- events` (issue 9): durable enqueues per second (202s/s through the
 * function URL), end-to-end async events per second through a no-op function, and p50/p99
 * end-to-end latency (enqueue → terminal outcome) from the invocations' own timings.
 * MQTT throughput and scheduled-run cold starts are not measured: those triggers are not
 * built yet. All traffic goes to 127.0.0.1. Results: `bench/results/latest-events.md`.
 *
 * Options: `--duration <s>` (10) of the enqueue measurement, `--events <n>` (2000) for the
 * end-to-end run, `--connections <n>` (64), `--no-save`.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cleanup, startTestServer, type TestServer } from "../test/helpers.ts";
import { RESULTS_DIR } from "./harness.ts";

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function blast(s: TestServer, fn: string, connections: number, until: () => boolean): Promise<number> {
  let ok = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (until()) {
        const r = await fetch(`${s.url}/fn/${fn}`, {
          method: "POST",
          headers: { "x-nimbus-invocation-type": "event" },
          body: "x",
        });
        await r.arrayBuffer();
        if (r.status === 202) ok++;
      }
    }),
  );
  return ok;
}

/** Runs the suite. */
export async function eventsMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    allowNegative: true,
    options: {
      duration: { type: "string", default: "10" },
      events: { type: "string", default: "2000" },
      connections: { type: "string", default: "64" },
      save: { type: "boolean", default: true },
    },
  });
  const durationS = Number(values.duration);
  const events = Number(values.events);
  const connections = Number(values.connections);
  const s = await startTestServer({ args: ["--max-concurrency", "1000"] });
  try {
    // The enqueue target's dispatcher is held back (retries 0, 1 instance) so the 202 rate
    // measures acceptance; the no-op target measures delivery.
    for (const [name, cfg] of [
      ["enq", { maxInstances: 1, maxQueuedEvents: 1_000_000 }],
      ["noop", { maxInstances: 4, concurrency: 8, maxQueuedEvents: 1_000_000 }],
    ] as const) {
      const d = await s.deploy(name, "events/echo-async.ts", cfg);
      if (d.status >= 300) throw new Error(`deploy ${name}: ${JSON.stringify(d.body)}`);
      await (await fetch(`${s.url}/fn/${name}`)).arrayBuffer();
    }
    const t0 = Date.now();
    const accepted = await blast(s, "enq", connections, () => Date.now() - t0 < durationS * 1000);
    const enqueuePerSec = accepted / ((Date.now() - t0) / 1000);
    console.log(
      `durable enqueues: ${Math.round(enqueuePerSec)}/s (${accepted} in ${durationS} s, ${connections} connections)`,
    );

    let sent = 0;
    const t1 = Date.now();
    await blast(s, "noop", connections, () => sent++ < events);
    let done = 0;
    const deadline = Date.now() + 300_000;
    let list: any[] = [];
    while (Date.now() < deadline) {
      const r = await s.api("GET", "/api/v1/functions/noop/async-invocations?limit=10000");
      done = r.body.stats.succeeded + r.body.stats.dead;
      list = r.body.invocations;
      if (done >= events) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const e2eSeconds = (Date.now() - t1) / 1000;
    const lat = list
      .filter((i) => i.endToEndMs !== null)
      .map((i) => i.endToEndMs as number)
      .sort((a, b) => a - b);
    const result = {
      time: new Date().toISOString(),
      cpus: cpus().length,
      loadavg: loadavg(),
      enqueuePerSec: Math.round(enqueuePerSec),
      e2eEventsPerSec: Math.round(done / e2eSeconds),
      e2eP50Ms: pct(lat, 50),
      e2eP99Ms: pct(lat, 99),
      events: done,
      notMeasured: ["MQTT through a function vs bare subscriber", "cold-start rate of scheduled runs"],
    };
    console.log(JSON.stringify(result, null, 2));
    if (values.save) {
      mkdirSync(RESULTS_DIR, { recursive: true });
      const md = [
        "# events benchmark",
        "",
        `${result.time}, ${result.cpus} cores, load average ${result.loadavg.map((l) => l.toFixed(1)).join(" ")}`,
        "",
        "| measure | value | aim |",
        "| --- | --- | --- |",
        `| durable enqueues (202/s, ${connections} connections) | ${result.enqueuePerSec} | ≥ 5,000 |`,
        `| end-to-end async events/s through a no-op function | ${result.e2eEventsPerSec} | |`,
        `| end-to-end latency p50 / p99 (enqueue → outcome) | ${result.e2eP50Ms} / ${result.e2eP99Ms} ms | |`,
        "| MQTT through a function vs bare subscriber | not measured (MQTT trigger not built) | ≥ 0.5× |",
        "| cold-start rate of scheduled runs | not measured (schedules not built) | 0 with pre-warm |",
        "",
      ].join("\n");
      writeFileSync(join(RESULTS_DIR, "latest-events.md"), md);
      writeFileSync(
        join(RESULTS_DIR, `events-${result.time.replace(/[:.]/g, "-")}.json`),
        JSON.stringify(result, null, 2),
      );
    }
  } finally {
    await s.stop();
    cleanup(s.dataDir);
  }
}
