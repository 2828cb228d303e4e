/**
 * Schedules against the real server: every tick becomes a durable async event delivered to
 * Workers' scheduled() or as EventBridge's scheduled event to a Lambda handler; records say
 * trigger "cron".
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

let s: TestServer;

async function cronRuns(fn: string, n: number): Promise<any[]> {
  const end = Date.now() + 60_000;
  for (;;) {
    const l =
      (await s.api("GET", `/api/v1/functions/${fn}/async-invocations?limit=100`)).body.invocations ?? [];
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
