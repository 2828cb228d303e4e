/**
 * `npm run bench -- events` (issue 9):
 * - durable enqueues per second (202s/s through the function URL, autocannon), and the
 *   server's CPU per 1,000 of them (all its threads: on a loaded machine the rate follows the
 *   CPU share the server gets; the CPU cost says what one free core would take);
 * - end-to-end async events per second through a no-op function, p50/p99 enqueue → outcome;
 * - MQTT QoS 1 messages per second through a function (acked at each event's outcome) vs a
 *   bare mqtt.js subscriber receiving the same stream in the same run (ratio), p50/p99
 *   publish → function and publish → bare subscriber;
 * - the cold-start rate of scheduled runs of a scale-to-zero function (15 s schedule, 1 s
 *   idle timeout), on two servers side by side: pre-warm on (default) and off
 *   (`--schedule-prewarm 0`).
 * All traffic goes to 127.0.0.1 (MQTT: a Mosquitto the bench starts on a random port, with
 * `max_queued_messages 0`).
 * Results: `bench/results/latest-events.md`.
 *
 * Options: `--duration <s>` (10) of the enqueue measurement, `--connections <n>` (256),
 * `--events <n>` (2000) for the end-to-end run, `--mqtt <n>` (5000) messages, `--ticks <n>`
 * (4) scheduled runs per server (0 skips), `--no-save`.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon, { type Options, type Result } from "autocannon";
import mqtt from "mqtt";
import { ownMosquitto } from "../test/brokers.ts";
import { cleanup, ROOT, startTestServer, type TestServer } from "../test/helpers.ts";
import { RESULTS_DIR } from "./harness.ts";

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** CPU time (user + system, all threads) the process has used, ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(100);
  }
}

function cannon(o: Options): Promise<Result> {
  return new Promise((resolve, reject) => {
    autocannon(o, (err, r) => (err ? reject(err) : resolve(r)));
  });
}

async function enqueueRate(s: TestServer, durationS: number, connections: number) {
  const c0 = cpuMs(s.proc.pid!);
  const r = await cannon({
    url: `${s.url}/fn/enq`,
    method: "POST",
    headers: { "x-nimbus-invocation-type": "event" },
    body: "x",
    connections,
    duration: durationS,
  });
  const used = cpuMs(s.proc.pid!) - c0;
  const accepted = r.requests.total - r.non2xx;
  return {
    perSec: Math.round(accepted / durationS),
    cpuMsPer1000: Math.round((used / Math.max(1, accepted)) * 1000),
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx,
  };
}

async function asyncE2e(s: TestServer, events: number, connections: number) {
  const t1 = Date.now();
  await cannon({
    url: `${s.url}/fn/noop`,
    method: "POST",
    headers: { "x-nimbus-invocation-type": "event" },
    body: "x",
    connections: Math.min(connections, events),
    amount: events,
  });
  let done = 0;
  let list: any[] = [];
  await waitFor(
    "async events",
    async () => {
      const r = await s.api("GET", "/api/v1/functions/noop/async-invocations?limit=10000");
      done = r.body.stats.succeeded + r.body.stats.dead;
      list = r.body.invocations;
      return done >= events ? true : undefined;
    },
    300_000,
  );
  const lat = list
    .filter((i) => i.endToEndMs !== null)
    .map((i) => i.endToEndMs as number)
    .sort((a, b) => a - b);
  return { perSec: Math.round(done / ((Date.now() - t1) / 1000)), p50: pct(lat, 50), p99: pct(lat, 99) };
}

async function mqttRun(s: TestServer, n: number, broker: string) {
  const topic = `nimbus-bench-${process.pid}-${Date.now()}`;
  const d = await s.deploy("mq-sink", join(ROOT, "bench/functions/mqtt-sink.ts"), {
    maxInstances: 4,
    triggers: [
      {
        type: "mqtt",
        url: broker,
        topic: `${topic}/+`,
        qos: 1,
        batchSize: 100,
        concurrency: 4,
        maxWait: 0.05,
      },
    ],
  });
  if (d.status >= 300) throw new Error(`deploy mq-sink: ${JSON.stringify(d.body)}`);
  await waitFor(
    "the MQTT trigger",
    async () => {
      const t = (await s.api("GET", "/api/v1/triggers?function=mq-sink")).body.triggers?.[0];
      return t?.state === "connected" ? t : undefined;
    },
    60_000,
  );
  const bareLat: number[] = [];
  let bareDone = 0;
  let bareEnd = 0;
  const bare = await mqtt.connectAsync(broker, { clientId: `${topic}-bare`, clean: true });
  await bare.subscribeAsync(`${topic}/+`, { qos: 1 });
  bare.on("message", (_t, payload) => {
    bareLat.push(Date.now() - Number(payload.toString()));
    if (++bareDone === n) bareEnd = Date.now();
  });
  const pub = await mqtt.connectAsync(broker, { clientId: `${topic}-pub` });
  const t0 = Date.now();
  // Published as fast as the broker takes them (QoS 1, many in flight).
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < n; i++) {
    const p = pub
      .publishAsync(`${topic}/d${i % 16}`, String(Date.now()), { qos: 1 })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 200) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const fnStatus = await waitFor(
    "the function's outcomes",
    async () => {
      const t = (await s.api("GET", "/api/v1/triggers?function=mq-sink")).body.triggers?.[0];
      return t && t.acked >= n ? t : undefined;
    },
    300_000,
  );
  const fnEnd = Date.now();
  await waitFor("the bare subscriber", async () => (bareDone >= n ? true : undefined), 60_000);
  await pub.endAsync();
  await bare.endAsync();
  const lines = (await s.api("GET", "/api/v1/functions/mq-sink/logs?limit=5000")).body.lines ?? [];
  const fnLat = lines
    .flatMap((l: any) => (/^lat (.*)$/.exec(l.msg)?.[1] ?? "").split(",").filter(Boolean).map(Number))
    .sort((a: number, b: number) => a - b);
  bareLat.sort((a, b) => a - b);
  const fnRate = n / ((fnEnd - t0) / 1000);
  const bareRate = n / ((bareEnd - t0) / 1000);
  return {
    messages: n,
    fnPerSec: Math.round(fnRate),
    barePerSec: Math.round(bareRate),
    ratio: Math.round((fnRate / bareRate) * 100) / 100,
    fnP50: pct(fnLat, 50),
    fnP99: pct(fnLat, 99),
    bareP50: pct(bareLat, 50),
    bareP99: pct(bareLat, 99),
    acked: fnStatus.acked,
  };
}

async function scheduledColdStarts(ticks: number) {
  const run = async (prewarm: boolean) => {
    const s = await startTestServer({ args: prewarm ? [] : ["--schedule-prewarm", "0"] });
    try {
      // At least 7 s before a tick, so the first one has its pre-warm window too.
      while (Date.now() % 15_000 > 7000) await sleep(100);
      const d = await s.deploy("tick", join(ROOT, "bench/functions/tick.ts"));
      if (d.status >= 300) throw new Error(`deploy tick: ${JSON.stringify(d.body)}`);
      const recs = await waitFor(
        "scheduled runs",
        async () => {
          const r = (await s.api("GET", "/api/v1/functions/tick/invocations?limit=100")).body.invocations;
          const cron = r.filter((x: any) => x.trigger === "cron");
          return cron.length >= ticks ? cron : undefined;
        },
        (ticks + 2) * 15_000 + 60_000,
      );
      return { runs: recs.length, cold: recs.filter((x: any) => x.coldStart).length };
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  };
  const [on, off] = await Promise.all([run(true), run(false)]);
  return { on, off };
}

/** Runs the suite. */
export async function eventsMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    allowNegative: true,
    options: {
      duration: { type: "string", default: "10" },
      events: { type: "string", default: "2000" },
      connections: { type: "string", default: "256" },
      mqtt: { type: "string", default: "5000" },
      ticks: { type: "string", default: "4" },
      save: { type: "boolean", default: true },
    },
  });
  const durationS = Number(values.duration);
  const events = Number(values.events);
  const connections = Number(values.connections);
  const load0 = loadavg();
  const s = await startTestServer({ args: ["--max-concurrency", "1000"] });
  let enq: Awaited<ReturnType<typeof enqueueRate>>;
  let e2e: Awaited<ReturnType<typeof asyncE2e>>;
  let mq: Awaited<ReturnType<typeof mqttRun>> | { skipped: string };
  try {
    // The enqueue target's delivery is held back (1 instance) so the 202 rate measures
    // acceptance; the no-op target measures delivery.
    for (const [name, cfg] of [
      ["enq", { maxInstances: 1, maxQueuedEvents: 1_000_000 }],
      ["noop", { maxInstances: 4, concurrency: 8, maxQueuedEvents: 1_000_000 }],
    ] as const) {
      const d = await s.deploy(name, "events/echo-async.ts", cfg);
      if (d.status >= 300) throw new Error(`deploy ${name}: ${JSON.stringify(d.body)}`);
      await (await fetch(`${s.url}/fn/${name}`)).arrayBuffer();
    }
    enq = await enqueueRate(s, durationS, connections);
    console.log(`durable enqueues: ${JSON.stringify(enq)}`);
    e2e = await asyncE2e(s, events, connections);
    console.log(`async end to end: ${JSON.stringify(e2e)}`);
    // Our own Mosquitto: the default one drops QoS 1 messages past 1,000 queued per client
    // (max_queued_messages), which a burst to a slower subscriber reaches.
    const broker = await ownMosquitto("max_queued_messages 0\n");
    try {
      await broker.start();
      mq = await mqttRun(s, Number(values.mqtt), broker.url);
    } catch (err) {
      mq = { skipped: String(err) };
    } finally {
      await broker.dispose();
    }
    console.log(`MQTT: ${JSON.stringify(mq)}`);
  } finally {
    await s.stop();
    cleanup(s.dataDir);
  }
  const ticks = Number(values.ticks);
  let sched: Awaited<ReturnType<typeof scheduledColdStarts>> | undefined;
  let schedError = "";
  try {
    if (ticks > 0) sched = await scheduledColdStarts(ticks);
  } catch (err) {
    schedError = String(err).slice(0, 200);
  }
  console.log(`scheduled cold starts: ${JSON.stringify(sched)}`);
  const result = {
    time: new Date().toISOString(),
    cpus: cpus().length,
    loadavg: [load0, loadavg()],
    enqueue: enq,
    asyncE2e: e2e,
    mqtt: mq,
    scheduled: sched ?? { skipped: schedError || "--ticks 0" },
  };
  console.log(JSON.stringify(result, null, 2));
  if (!values.save) return;
  const m = "skipped" in mq ? undefined : mq;
  const la = (l: number[]) => l.map((x) => x.toFixed(1)).join(" ");
  const md = [
    "# events benchmark",
    "",
    `${result.time}, ${result.cpus} cores, load average ${la(load0)} at start, ${la(loadavg())} at the end`,
    "",
    "| measure | value | aim |",
    "| --- | --- | --- |",
    `| durable enqueues (202/s, ${connections} connections, autocannon) | ${enq.perSec} (p50/p99 ${enq.p50}/${enq.p99} ms) | ≥ 5,000 |`,
    `| server CPU per 1,000 enqueues (all threads) | ${enq.cpuMsPer1000} ms (≈ ${Math.round(1_000_000 / Math.max(1, enq.cpuMsPer1000))}/s per free core) | |`,
    `| end-to-end async events/s through a no-op function | ${e2e.perSec} | |`,
    `| end-to-end latency p50 / p99 (enqueue → outcome) | ${e2e.p50} / ${e2e.p99} ms | |`,
    m
      ? `| MQTT QoS 1 msgs/s through a function vs bare mqtt.js subscriber (same stream) | ${m.fnPerSec} vs ${m.barePerSec} = **${m.ratio}×** | ≥ 0.5× |`
      : `| MQTT | not measured: ${"skipped" in mq ? mq.skipped : ""} | ≥ 0.5× |`,
    m
      ? `| MQTT latency p50 / p99, publish → function / → bare subscriber | ${m.fnP50} / ${m.fnP99} ms vs ${m.bareP50} / ${m.bareP99} ms | |`
      : "",
    sched
      ? `| cold scheduled runs (15 s schedule, 1 s idle timeout), pre-warm on / off | ${sched.on.cold} of ${sched.on.runs} / ${sched.off.cold} of ${sched.off.runs} | 0 with pre-warm |`
      : `| cold scheduled runs | not measured (${schedError || "--ticks 0"}) | 0 with pre-warm |`,
    "",
  ]
    .filter((l) => l !== "")
    .join("\n");
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, "latest-events.md"), `${md}\n`);
  writeFileSync(
    join(RESULTS_DIR, `events-${result.time.replace(/[:.]/g, "-")}.json`),
    JSON.stringify(result, null, 2),
  );
}
