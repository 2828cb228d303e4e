/**
 * Schedules against the real server: every tick becomes a durable async event delivered to
 * Workers' scheduled() or as EventBridge's scheduled event to a Lambda handler; records say
 * trigger "cron".
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cleanup, deployIsolateSource, sleep, startTestServer, type TestServer } from "./helpers.ts";

let s: TestServer;

async function cronRuns(fn: string, n: number, on: TestServer = s, waitMs = 60_000): Promise<any[]> {
  const end = Date.now() + waitMs;
  for (;;) {
    const l =
      (await on.api("GET", `/api/v1/functions/${fn}/async-invocations?limit=100`)).body.invocations ?? [];
    const done = l.filter((i: any) => i.trigger === "cron" && i.state === "succeeded");
    if (done.length >= n) return done;
    if (Date.now() > end)
      throw new Error(`only ${done.length} scheduled runs of ${fn}: ${JSON.stringify(l.slice(0, 3))}`);
    await sleep(250);
  }
}

describe("schedules", () => {
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  test("a Workers module's scheduled(controller) runs on every tick with the cron", async () => {
    const d = await s.deploy("tick-w", "events/tick-workers.ts");
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const runs = await cronRuns("tick-w", 2);
    assert.equal(runs[0].result.status, 204);
    const logs = await s.api("GET", "/api/v1/functions/tick-w/logs?limit=50");
    assert.ok(
      logs.body.lines.some((l: any) => /^tick \* \* \* \* \* \* at \d{4}-/.test(l.msg)),
      JSON.stringify(logs.body.lines.slice(-5)),
    );
    const recs = (await s.api("GET", "/api/v1/functions/tick-w/invocations?limit=50")).body.invocations;
    const cron = recs.filter((r: any) => r.trigger === "cron");
    assert.ok(cron.length >= 2);
    assert.ok(
      cron.some((r: any) => !r.coldStart),
      "scheduled runs after the first find a warm instance",
    );
  });

  test("a Lambda handler gets EventBridge's scheduled event; several schedules and a timezone", async () => {
    const d = await s.deploy("tick-l", "events/tick-lambda.ts", {
      schedule: ["*/2 * * * * *", "*/3 * * * * *"],
      timezone: "Europe/Paris",
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const runs = await cronRuns("tick-l", 3);
    const event = JSON.parse(runs[0].result.body);
    assert.equal(event["detail-type"], "Scheduled Event");
    assert.equal(event.source, "aws.events");
    assert.match(event.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const crons = new Set(
      runs.map((r: any) => (JSON.parse(r.result.body).resources[0] as string).split("/").slice(2).join("/")),
    );
    assert.ok(crons.size >= 1);
  });

  test("an isolate module's scheduled(controller, env, ctx) runs on every tick (not a POST to fetch)", async () => {
    const src = `export default {
  async fetch() { console.log("fetch called"); return new Response("fetch", { status: 500 }); },
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(Promise.resolve());
    console.log("itick " + controller.cron + " at " + new Date(controller.scheduledTime).toISOString() +
      " noRetry=" + typeof controller.noRetry + " env=" + env.GREETING);
  },
};`;
    const d = await deployIsolateSource(s, s.dataDir, "tick-iso", src, {
      schedule: "*/2 * * * * *",
      env: { GREETING: "hi" },
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const runs = await cronRuns("tick-iso", 2);
    assert.equal(runs[0].result.status, 204);
    const lines = (await s.api("GET", "/api/v1/functions/tick-iso/logs?limit=50")).body.lines.map(
      (l: any) => l.msg as string,
    );
    const ticks = lines.filter((l: string) => l.startsWith("itick "));
    assert.ok(ticks.length >= 2, JSON.stringify(lines.slice(-5)));
    assert.match(
      ticks[0]!,
      /^itick \*\/2 \* \* \* \* \* at \d{4}-\d\d-\d\dT\d\d:\d\d:(\d\d)\.000Z noRetry=function env=hi$/,
    );
    // scheduledTime is the tick's (on a 2 s schedule: an even second).
    const sec = Number(/:(\d\d)\.000Z/.exec(ticks[0]!)![1]);
    assert.equal(sec % 2, 0);
    assert.ok(!lines.includes("fetch called"), "the tick went to scheduled(), not to fetch");
  });

  test("pre-warm: a scale-to-zero function's scheduled runs are warm; with --schedule-prewarm 0 they are cold", async () => {
    // Two servers side by side, the same function (15 s schedule, 1 s idle timeout).
    for (const f of ["tick-w", "tick-l", "tick-iso"]) await s.api("DELETE", `/api/v1/functions/${f}`);
    const off = await startTestServer({ args: ["--schedule-prewarm", "0"] });
    try {
      // Deployed at least 7 s before a tick, so even the first tick has its 5 s pre-warm window.
      while (Date.now() % 15_000 > 7000) await sleep(100);
      const withPre = await s.deploy("tick-warm", "events/tick-prewarm.ts");
      assert.ok(withPre.status < 300, JSON.stringify(withPre.body));
      const without = await off.deploy("tick-warm", "events/tick-prewarm.ts");
      assert.ok(without.status < 300, JSON.stringify(without.body));
      // Between ticks the pre-warm server scales the function to zero (its idle timeout is 1 s).
      let sawZeroAfterRun = false;
      let runsSeen = 0;
      const watch = (async () => {
        while (runsSeen < 3) {
          const f = (await s.api("GET", "/api/v1/functions/tick-warm")).body.instances;
          const l = (await s.api("GET", "/api/v1/functions/tick-warm/async-invocations?limit=20")).body
            .invocations;
          runsSeen = l.filter((i: any) => i.state === "succeeded").length;
          if (runsSeen >= 1 && runsSeen < 3 && f.idle + f.busy + f.starting === 0) sawZeroAfterRun = true;
          await sleep(200);
        }
      })();
      const [warmRuns, coldRuns] = await Promise.all([
        cronRuns("tick-warm", 3, s, 120_000),
        cronRuns("tick-warm", 2, off, 120_000),
        watch,
      ]);
      assert.ok(warmRuns.length >= 3 && coldRuns.length >= 2);
      const records = async (on: TestServer) =>
        (await on.api("GET", "/api/v1/functions/tick-warm/invocations?limit=50")).body.invocations.filter(
          (r: any) => r.trigger === "cron",
        );
      const warm = await records(s);
      const cold = await records(off);
      assert.ok(warm.length >= 3, JSON.stringify(warm));
      assert.deepEqual(
        warm.map((r: any) => r.coldStart),
        warm.map(() => false),
        "every scheduled run found its pre-warmed instance",
      );
      assert.ok(
        sawZeroAfterRun,
        "the function scaled to zero between ticks (so each tick had its own pre-warm)",
      );
      assert.ok(cold.length >= 2);
      assert.ok(
        cold.every((r: any) => r.coldStart),
        `without pre-warm every run is cold: ${JSON.stringify(cold.map((r: any) => r.coldStart))}`,
      );
    } finally {
      await off.stop();
      cleanup(off.dataDir);
    }
  });

  test("an invalid schedule is refused at deploy naming the field", async () => {
    const bad = await s.deploy("tick-bad", "events/tick-lambda.ts", { schedule: "* * *" });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /config\.schedule/);
    const tz = await s.deploy("tick-bad", "events/tick-lambda.ts", {
      schedule: "* * * * *",
      timezone: "Mars/Base",
    });
    assert.equal(tz.status, 400);
    assert.match(tz.body.error.message, /config\.timezone/);
  });
});
