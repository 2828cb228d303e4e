/**
 * MQTT triggers against the real Mosquitto at 127.0.0.1:1883 (skipped with a reason when it
 * is absent, failing when CI=true): topic filters, QoS 1, batches delivered to queue(batch),
 * Lambda Records and binary-mode CloudEvents, retries and DLQ, size limits, an unreachable
 * broker (state retrying, server fine) and a broker connection cut and restored.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect as netConnect, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import mqtt from "mqtt";
import { readFileSync } from "node:fs";
import {
  cleanup,
  deployIsolateSource,
  FIXTURES,
  sleep,
  startTestServer,
  type TestServer,
} from "./helpers.ts";

const BROKER = "mqtt://127.0.0.1:1883";

async function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

const up = await reachable(1883);
if (!up && process.env.CI === "true")
  throw new Error("Mosquitto is not running at 127.0.0.1:1883 and CI=true");
const skip = up
  ? false
  : "Mosquitto is not running at 127.0.0.1:1883 (start it: mosquitto -d -c /etc/mosquitto/mosquitto.conf)";

let s: TestServer;
let pub: mqtt.MqttClient;
const prefix = `nimbus-test-${randomBytes(4).toString("hex")}`;

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await sleep(200);
  }
}

async function triggerOf(fn: string, state?: string): Promise<any> {
  return until(`${fn}'s trigger${state ? ` to be ${state}` : ""}`, async () => {
    const r = await s.api("GET", `/api/v1/triggers?function=${fn}`);
    const t = r.body.triggers?.[0];
    return t && (!state || t.state === state) ? t : undefined;
  });
}

async function logLines(fn: string, re: RegExp, n: number): Promise<string[]> {
  return until(`${n} log lines of ${fn} matching ${re}`, async () => {
    const r = await s.api("GET", `/api/v1/functions/${fn}/logs?limit=500`);
    const lines = (r.body.lines ?? []).map((l: any) => l.msg as string).filter((m: string) => re.test(m));
    return lines.length >= n ? lines : undefined;
  });
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("MQTT triggers", { skip }, () => {
  before(async () => {
    s = await startTestServer();
    pub = await mqtt.connectAsync(BROKER, { clientId: `${prefix}-pub` });
  });
  after(async () => {
    await pub?.endAsync();
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  test("a `+` filter delivers QoS 1 messages in batches to queue(batch) with the device id; other topics are not delivered", async () => {
    const topic = `${prefix}/w/+/temp`;
    const d = await s.deploy("mq-workers", "triggers/workers-queue.ts", {
      triggers: [{ type: "mqtt", url: BROKER, topic, qos: 1, batchSize: 5, maxWait: 0.2 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-workers", "connected");
    for (let i = 0; i < 12; i++) await pub.publishAsync(`${prefix}/w/dev${i % 3}/temp`, `t${i}`, { qos: 1 });
    await pub.publishAsync(`${prefix}/w/dev0/humidity`, "h0", { qos: 1 });
    const lines = await logLines("mq-workers", /^msg /, 12);
    const bodies = lines.map((l) => /body=(\S+)/.exec(l)![1]).sort();
    assert.deepEqual(bodies, Array.from({ length: 12 }, (_, i) => `t${i}`).sort());
    assert.ok(
      lines.some((l) => l.includes(`topic=${prefix}/w/dev1/temp device=dev1 qos=1`)),
      lines[0],
    );
    assert.ok(!lines.some((l) => l.includes("humidity")));
    assert.ok(
      lines.some((l) => /size=[2-5]$/.test(l)),
      "some deliveries carry more than one message",
    );
    const inv = await s.api("GET", "/api/v1/functions/mq-workers/async-invocations?limit=50");
    assert.ok(inv.body.invocations.length >= 3 && inv.body.invocations.length <= 12);
    assert.ok(inv.body.invocations.every((i: any) => i.trigger === "mqtt"));
    const t = await triggerOf("mq-workers");
    assert.equal(t.stored, 12);
    assert.equal(t.dropped, 0);
    const cli = await s.cli(["triggers", "ls", "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    const mine = JSON.parse(cli.stdout).triggers.find((x: any) => x.function === "mq-workers");
    assert.equal(mine.state, "connected");
    const human = await s.cli(["triggers", "ls"]);
    assert.match(human.stdout, /mq-workers .*mqtt .*connected/);
  });

  test("an isolate function gets queue(batch) and CloudEvent POSTs too", async () => {
    for (const [name, file, topic] of [
      ["mq-iso-q", "workers-queue.ts", `${prefix}/iq/+`],
      ["mq-iso-f", "fetch-cloudevent.ts", `${prefix}/if/+`],
    ] as const) {
      const src = readFileSync(`${FIXTURES}/triggers/${file}`, "utf8");
      const d = await deployIsolateSource(s, s.dataDir, name, src, {
        triggers: [{ type: "mqtt", url: BROKER, topic, maxWait: 0.1 }],
      });
      assert.ok(d.status < 300, JSON.stringify(d.body));
      await triggerOf(name, "connected");
    }
    await pub.publishAsync(`${prefix}/iq/d9`, "iso-q", { qos: 1 });
    await pub.publishAsync(`${prefix}/if/d8`, "iso-f", { qos: 1 });
    const [q] = await logLines("mq-iso-q", /^msg /, 1);
    assert.match(q!, /device=d9 qos=1 body=iso-q/);
    const [f] = await logLines("mq-iso-f", /^ce /, 1);
    assert.match(f!, /specversion=1\.0 .*device=d8 .*body=iso-f$/);
  });

  test("a `#` filter gives a Lambda handler the Records shape", async () => {
    const d = await s.deploy("mq-lambda", "triggers/lambda-records.ts", {
      triggers: [{ type: "mqtt", url: BROKER, topic: `${prefix}/l/#`, batchSize: 10, maxWait: 0.3 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-lambda", "connected");
    await pub.publishAsync(`${prefix}/l/a/b/c`, JSON.stringify({ v: 1 }), { qos: 1 });
    await pub.publishAsync(`${prefix}/l/x`, "plain", { qos: 1 });
    const records = await until("two records", async () => {
      const r = await s.api("GET", "/api/v1/functions/mq-lambda/async-invocations?limit=50");
      const all = r.body.invocations
        .filter((i: any) => i.state === "succeeded")
        .flatMap((i: any) => JSON.parse(i.result.body).records);
      return all.length >= 2 ? all : undefined;
    });
    const byTopic = new Map(records.map((r: any) => [r.topic, r]));
    assert.equal((byTopic.get(`${prefix}/l/a/b/c`) as any).body, '{"v":1}');
    assert.equal((byTopic.get(`${prefix}/l/x`) as any).source, "nimbus:mqtt");
  });

  test("a plain fetch handler gets one binary-mode CloudEvent POST per message", async () => {
    const d = await s.deploy("mq-fetch", "triggers/fetch-cloudevent.ts", {
      triggers: [{ type: "mqtt", url: BROKER, topic: `${prefix}/f/+/state`, maxWait: 0.1 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-fetch", "connected");
    await pub.publishAsync(`${prefix}/f/lamp7/state`, "on", { qos: 1 });
    const [line] = await logLines("mq-fetch", /^ce /, 1);
    assert.match(line!, /method=POST specversion=1\.0 type=io\.nimbus\.mqtt\.message/);
    assert.match(line!, new RegExp(`subject=${prefix}/f/lamp7/state device=lamp7 id=\\S+ body=on$`));
  });

  test("a failing batch is retried, then dead-lettered; retry() fails the batch too", async () => {
    const d = await s.deploy("mq-fail", "triggers/workers-queue.ts", {
      retries: 1,
      triggers: [{ type: "mqtt", url: BROKER, topic: `${prefix}/x/+`, batchSize: 1, maxWait: 0.05 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-fail", "connected");
    await pub.publishAsync(`${prefix}/x/a`, "fail", { qos: 1 });
    await pub.publishAsync(`${prefix}/x/b`, "retry", { qos: 1 });
    const dead = await until("two dead-lettered batches", async () => {
      const r = await s.api("GET", "/api/v1/functions/mq-fail/dlq");
      const l = r.body.events ?? [];
      return l.length >= 2 ? l : undefined;
    });
    assert.ok(
      dead.every((e: any) => e.attempts === 2 && e.trigger === "mqtt"),
      JSON.stringify(dead),
    );
    assert.ok(
      dead.every((e: any) => /NIMBUS_FUNCTION_ERROR/.test(e.error)),
      JSON.stringify(dead),
    );
    // The reasons are in the function's logs (errors returned to callers stay generic).
    await logLines("mq-fail", /asked to fail/, 2);
    await logLines("mq-fail", /1 of 1 messages asked for retry/, 2);
  });

  test("attack: a device publishes a message over maxMessageBytes → it is dropped and counted, the next one arrives", async () => {
    const d = await s.deploy("mq-big", "triggers/workers-queue.ts", {
      triggers: [
        { type: "mqtt", url: BROKER, topic: `${prefix}/big/+`, maxMessageBytes: 100, maxWait: 0.05 },
      ],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-big", "connected");
    // Over the packet size announced to the broker (MQTT 5 Maximum Packet Size): the broker
    // itself does not send it. Over maxMessageBytes but under that: dropped here, counted.
    await pub.publishAsync(`${prefix}/big/a`, "x".repeat(50_000), { qos: 1 });
    await pub.publishAsync(`${prefix}/big/a`, "y".repeat(1500), { qos: 1 });
    await pub.publishAsync(`${prefix}/big/a`, "small", { qos: 1 });
    const lines = await logLines("mq-big", /^msg /, 1);
    assert.match(lines[0]!, /body=small/);
    assert.equal(lines.length, 1);
    const t = await triggerOf("mq-big");
    assert.equal(t.dropped, 1);
    assert.match(t.lastError, /dropped a message .* 1500 bytes/);
    assert.equal(t.state, "connected");
  });

  test("a broker nobody listens at: state retrying with the last error, the server keeps serving", async () => {
    const port = await freePort();
    const d = await s.deploy("mq-down", "triggers/workers-queue.ts", {
      triggers: [{ type: "mqtt", url: `mqtt://127.0.0.1:${port}`, topic: "a/+" }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const t = await until("retries", async () => {
      const x = await triggerOf("mq-down", "retrying");
      return x.retries >= 2 ? x : undefined;
    });
    assert.match(t.lastError, /ECONNREFUSED/);
    const r = await fetch(`${s.url}/fn/mq-down`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "ok");
    const cli = await s.cli(["triggers", "ls", "-f", "mq-down"]);
    assert.match(cli.stdout, /mq-down .*retrying \(\d+\).*ECONNREFUSED/);
  });

  test("the broker connection is cut and comes back: retrying, then connected, and messages flow again", async () => {
    // A loopback proxy in front of Mosquitto that the test can cut.
    const sockets = new Set<Socket>();
    let proxy: Server | undefined;
    const port = await freePort();
    const open = async () => {
      proxy = createServer((c) => {
        const b = netConnect({ host: "127.0.0.1", port: 1883 });
        sockets.add(c).add(b);
        c.pipe(b).pipe(c);
        const end = () => {
          c.destroy();
          b.destroy();
        };
        c.on("error", end).on("close", end);
        b.on("error", end).on("close", end);
      });
      await new Promise<void>((r) => proxy!.listen(port, "127.0.0.1", r));
    };
    const cut = async () => {
      await new Promise((r) => {
        proxy!.close(r);
        for (const x of sockets) x.destroy();
      });
      sockets.clear();
    };
    await open();
    try {
      const d = await s.deploy("mq-flap", "triggers/workers-queue.ts", {
        triggers: [
          { type: "mqtt", url: `mqtt://127.0.0.1:${port}`, topic: `${prefix}/flap/+`, maxWait: 0.05 },
        ],
      });
      assert.ok(d.status < 300, JSON.stringify(d.body));
      await triggerOf("mq-flap", "connected");
      await pub.publishAsync(`${prefix}/flap/a`, "before", { qos: 1 });
      await logLines("mq-flap", /body=before/, 1);
      await cut();
      await triggerOf("mq-flap", "retrying");
      // Published while the trigger is away: the broker keeps it in the trigger's session.
      await pub.publishAsync(`${prefix}/flap/a`, "during", { qos: 1 });
      await open();
      await triggerOf("mq-flap", "connected");
      await pub.publishAsync(`${prefix}/flap/a`, "after", { qos: 1 });
      await logLines("mq-flap", /body=during/, 1);
      await logLines("mq-flap", /body=after/, 1);
    } finally {
      await cut();
    }
  });

  test("bad trigger config is refused at deploy naming the field", async () => {
    const r = await s.deploy("mq-bad", "triggers/workers-queue.ts", {
      triggers: [{ type: "mqtt", url: BROKER, topic: "a/#/b" }],
    });
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /config\.triggers\[0\]\.topic/);
    const q = await s.deploy("mq-bad", "triggers/workers-queue.ts", {
      triggers: [{ type: "mqtt", url: BROKER, topic: "a", qos: 2 }],
    });
    assert.equal(q.status, 400);
    assert.match(q.body.error.message, /config\.triggers\[0\]\.qos/);
  });
});
