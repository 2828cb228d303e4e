/**
 * Triggers against brokers this test owns (its own Mosquitto and nats-server on random
 * loopback ports, temp data directories; the shared ones are never restarted):
 * - a QoS 1 message is acknowledged to the broker only at its event's terminal outcome: a
 *   server SIGKILLed while the function runs gets it again from the broker (a duplicate);
 * - the broker is restarted mid-stream: the trigger reports `retrying` with the error, then
 *   `connected`; messages published after the restart are delivered; the server keeps serving.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import mqtt from "mqtt";
import { type OwnBroker, ownMosquitto, ownNats, until } from "./brokers.ts";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

let s: TestServer;

async function triggerOf(fn: string, state?: string): Promise<any> {
  return until(`${fn}'s trigger${state ? ` to be ${state}` : ""}`, async () => {
    const r = await s.api("GET", `/api/v1/triggers?function=${fn}`);
    const t = r.body.triggers?.[0];
    return t && (!state || t.state === state) ? t : undefined;
  });
}

/** Bodies the function finished (`done body=…` log lines), with repeats. */
async function doneBodies(fn: string): Promise<string[]> {
  const r = await s.api("GET", `/api/v1/functions/${fn}/logs?limit=1000`);
  return (r.body.lines ?? [])
    .map((l: any) => /^done body=(.*)$/.exec(l.msg as string)?.[1])
    .filter((b: string | undefined): b is string => b !== undefined);
}

async function healthy(): Promise<void> {
  assert.equal(s.proc.exitCode, null, "the server did not exit");
  const r = await s.api("GET", "/api/v1/functions");
  assert.equal(r.status, 200, "the server keeps serving");
}

describe("triggers against brokers the test restarts", () => {
  let mosq: OwnBroker;
  let nats: OwnBroker;
  before(async () => {
    mosq = await ownMosquitto();
    nats = await ownNats();
    await Promise.all([mosq.start(), nats.start()]);
    s = await startTestServer();
  });
  after(async () => {
    await s?.stop();
    if (s) cleanup(s.dataDir);
    await mosq?.dispose();
    await nats?.dispose();
  });

  test("MQTT QoS 1: acked only at the event's outcome; a server killed mid-run gets the message again from the broker", async () => {
    const d = await s.deploy("mq-ack", "triggers/slow-queue.ts", {
      triggers: [{ type: "mqtt", url: mosq.url, topic: "ack/+", batchSize: 1, maxWait: 0.05 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-ack", "connected");
    const pub = await mqtt.connectAsync(mosq.url, { clientId: "ack-pub" });
    try {
      await pub.publishAsync("ack/d1", "sleep:3000", { qos: 1 });
      // Stored and running, not acknowledged yet.
      const running = await until("stored, not acked", async () => {
        const t = await triggerOf("mq-ack");
        return t.stored === 1 ? t : undefined;
      });
      assert.equal(running.acked, 0, "no PUBACK while the function runs");
      await until("acked after success", async () => {
        const t = await triggerOf("mq-ack");
        return t.acked === 1 ? t : undefined;
      });
      assert.deepEqual(await doneBodies("mq-ack"), ["sleep:3000"]);

      // Killed mid-run: no PUBACK was sent, so the broker redelivers into the same session.
      await pub.publishAsync("ack/d1", "sleep:4000-kill", { qos: 1 });
      await until("the run started", async () => {
        const r = await s.api("GET", "/api/v1/functions/mq-ack/async-invocations?limit=20");
        return r.body.invocations.some((i: any) => i.state === "running") ? true : undefined;
      });
      const dataDir = s.dataDir;
      await s.stop("SIGKILL");
      s = await startTestServer({ dataDir });
      await triggerOf("mq-ack", "connected");
      // The redelivered message is a second event; the first one comes back when its lease ends.
      const events = await until(
        "the broker's redelivery stored as a new event",
        async () => {
          const r = await s.api("GET", "/api/v1/functions/mq-ack/async-invocations?limit=20");
          return r.body.invocations.length >= 3 ? r.body.invocations : undefined;
        },
        90_000,
      );
      assert.ok(events.length >= 3, JSON.stringify(events));
      await until("the redelivered message ran", async () =>
        (await doneBodies("mq-ack")).includes("sleep:4000-kill") ? true : undefined,
      );
      await until("the redelivered message acked at its outcome", async () => {
        const t = await triggerOf("mq-ack", "connected");
        return t.acked >= 1 ? t : undefined;
      });
    } finally {
      await pub.endAsync();
    }
  });

  test("MQTT: the broker restarts mid-stream → retrying with the error, then connected; later messages arrive", async () => {
    const d = await s.deploy("mq-restart", "triggers/slow-queue.ts", {
      triggers: [{ type: "mqtt", url: mosq.url, topic: "r/+", batchSize: 5, maxWait: 0.05 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("mq-restart", "connected");
    const pub = await mqtt.connectAsync(mosq.url, { clientId: "restart-pub", reconnectPeriod: 200 });
    try {
      for (let i = 0; i < 20; i++) await pub.publishAsync("r/d", `before-${i}`, { qos: 1 });
      await until("some delivered", async () =>
        (await doneBodies("mq-restart")).length >= 5 ? true : undefined,
      );
      await mosq.stop("SIGTERM");
      const t = await triggerOf("mq-restart", "retrying");
      assert.ok(t.lastError, JSON.stringify(t));
      await healthy();
      await mosq.start();
      await triggerOf("mq-restart", "connected");
      await until("the publisher reconnected", async () => (pub.connected ? true : undefined));
      for (let i = 0; i < 20; i++) await pub.publishAsync("r/d", `after-${i}`, { qos: 1 });
      const done = await until("every message", async () => {
        const b = new Set(await doneBodies("mq-restart"));
        for (let i = 0; i < 20; i++) if (!b.has(`before-${i}`) || !b.has(`after-${i}`)) return undefined;
        return b;
      });
      assert.equal(done.size, 40);
      await healthy();
    } finally {
      await pub.endAsync(true);
    }
  });

  test("NATS JetStream and core: the server is SIGKILLed and restarted mid-stream → retrying, then connected; later messages arrive", async () => {
    let nc: NatsConnection | undefined = await connect({ servers: `127.0.0.1:${nats.port}` });
    await (await jetstreamManager(nc)).streams.add({ name: "RESTART", subjects: ["rs.>"] });
    await nc.close();
    const d = await s.deploy("nats-restart", "triggers/slow-queue.ts", {
      triggers: [{ type: "nats", url: nats.url, stream: "RESTART", batchSize: 5, maxWait: 0.05 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const core = await s.deploy("nats-core", "triggers/slow-queue.ts", {
      triggers: [{ type: "nats", url: nats.url, subject: "core.>", maxWait: 0.05 }],
    });
    assert.ok(core.status < 300, JSON.stringify(core.body));
    await triggerOf("nats-restart", "connected");
    await triggerOf("nats-core", "connected");
    nc = await connect({ servers: `127.0.0.1:${nats.port}` });
    let js = jetstream(nc);
    for (let i = 0; i < 20; i++) await js.publish(`rs.${i}`, `before-${i}`);
    await until("some delivered", async () =>
      (await doneBodies("nats-restart")).length >= 5 ? true : undefined,
    );
    await nc.close();
    await nats.stop("SIGKILL");
    const t = await triggerOf("nats-restart", "retrying");
    assert.ok(t.lastError, JSON.stringify(t));
    assert.equal((await triggerOf("nats-core")).state, "retrying");
    await healthy();
    await nats.start();
    await triggerOf("nats-restart", "connected");
    await triggerOf("nats-core", "connected");
    nc = await connect({ servers: `127.0.0.1:${nats.port}` });
    try {
      js = jetstream(nc);
      for (let i = 0; i < 20; i++) await js.publish(`rs.${i}`, `after-${i}`);
      const done = await until("every JetStream message", async () => {
        const b = new Set(await doneBodies("nats-restart"));
        for (let i = 0; i < 20; i++) if (!b.has(`before-${i}`) || !b.has(`after-${i}`)) return undefined;
        return b;
      });
      assert.equal(done.size, 40);
      // Core NATS is at most once: what is published once the trigger is back arrives.
      await until("a core message after the restart", async () => {
        nc!.publish("core.x", "core-after");
        await sleep(300);
        return (await doneBodies("nats-core")).includes("core-after") ? true : undefined;
      });
      await healthy();
    } finally {
      await nc.close();
    }
  });
});
