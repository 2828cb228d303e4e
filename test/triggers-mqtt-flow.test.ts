/**
 * Regression: Mosquitto 2.0 sends a whole Receive Maximum quota of QoS 1 messages more after
 * each PUBACK, so a trigger holding messages until their events' outcomes got more than it
 * advertised. It used to drop those (unacknowledged, so the broker kept them in flight and
 * never sent them again on that connection: lost until a reconnect). Now the trigger pauses
 * reading the socket until a held message settles: every message runs, none is dropped.
 * Our own Mosquitto on a random port (the shared one is never touched).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import mqtt from "mqtt";
import { ownMosquitto, until } from "./brokers.ts";
import { cleanup, startTestServer } from "./helpers.ts";

test("MQTT QoS 1 past Receive Maximum: the trigger pauses the broker instead of dropping; every message runs", {
  timeout: 150_000,
}, async () => {
  const mosq = await ownMosquitto();
  await mosq.start();
  const s = await startTestServer();
  const pub = await mqtt.connectAsync(mosq.url, { clientId: "flow-pub" });
  try {
    // Receive Maximum = batchSize × (concurrency + 1) = 10.
    const d = await s.deploy("mq-flow", "triggers/slow-queue.ts", {
      triggers: [
        { type: "mqtt", url: mosq.url, topic: "flow/+", batchSize: 5, concurrency: 1, maxWait: 0.05 },
      ],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await until("the trigger to connect", async () => {
      const t = (await s.api("GET", "/api/v1/triggers?function=mq-flow")).body.triggers?.[0];
      return t?.state === "connected" ? t : undefined;
    });
    const N = 80;
    for (let i = 0; i < N; i++) await pub.publishAsync(`flow/d${i % 4}`, `k${i}`, { qos: 1 });
    const done = await until(
      "every message to run",
      async () => {
        const r = await s.api("GET", "/api/v1/functions/mq-flow/logs?limit=1000");
        const bodies = new Set(
          (r.body.lines ?? [])
            .map((l: { msg: string }) => /^done body=(k\d+)$/.exec(l.msg)?.[1])
            .filter((b: string | undefined) => b !== undefined),
        );
        return bodies.size === N ? bodies : undefined;
      },
      120_000,
    );
    assert.equal(done.size, N);
    const t = (await s.api("GET", "/api/v1/triggers?function=mq-flow")).body.triggers[0];
    assert.equal(t.dropped, 0, `no message dropped: ${JSON.stringify(t)}`);
    assert.equal(t.lastError, null, JSON.stringify(t));
    await until("every message acknowledged", async () => {
      const st = (await s.api("GET", "/api/v1/triggers?function=mq-flow")).body.triggers[0];
      return st.acked >= N ? st : undefined;
    });
  } finally {
    await pub.endAsync(true);
    await s.stop();
    cleanup(s.dataDir);
    await mosq.dispose();
  }
});
