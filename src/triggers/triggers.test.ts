import assert from "node:assert/strict";
import { test } from "node:test";
import { parseBatch, toCloudEventRequests, toMessageBatch, toRecordsEvent } from "../runtime/batch.ts";
import { Batcher } from "./batcher.ts";
import { isMqttFilter, isNatsSubject, validateTriggers } from "./config.ts";
import { batchPayload } from "./manager.ts";
import { deviceOf, reconnectDelay } from "./mqtt.ts";
import { PacketSizeGuard } from "./mqtt-guard.ts";
import type { Incoming } from "./types.ts";

const msg = (i: number, settled: (ok: boolean) => void, ackOnOutcome = false): Incoming => ({
  subject: `s/${i}`,
  data: Buffer.from(String(i)),
  attributes: {},
  at: 0,
  ackOnOutcome,
  settle: settled,
});
const noOutcome = { outcome: async () => {}, cancel() {} };

test("batcher: a message is settled (acked) only after its batch is stored; a failed store is retried", async () => {
  const settled: [number, boolean][] = [];
  let fail = 1;
  const stored: number[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const b = new Batcher({
    batchSize: 3,
    maxBatchBytes: 1000,
    maxWaitMs: 10,
    concurrency: 1,
    maxUnsettled: 7,
    sink: async (ms) => {
      await gate;
      if (fail-- > 0) throw new Error("disk full");
      stored.push(ms.map((m) => Number(m.data.toString())));
      return noOutcome;
    },
    onError: () => {},
    onStored: () => {},
  });
  for (let i = 0; i < 3; i++) assert.ok(b.push(msg(i, (ok) => settled.push([i, ok]))));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(settled.length, 0, "nothing acked before the store resolved");
  // Bounded: 7 unsettled at most (3 being stored + 4 waiting).
  for (let i = 3; i < 7; i++) assert.ok(b.push(msg(i, (ok) => settled.push([i, ok]))));
  assert.equal(b.push(msg(99, () => {})), false, "past maxUnsettled, push refuses");
  release();
  for (let i = 0; i < 200 && settled.length < 7; i++) await new Promise((r) => setTimeout(r, 25));
  assert.deepEqual(stored, [[0, 1, 2], [3, 4, 5], [6]]);
  assert.ok(settled.every(([, ok]) => ok));
  await b.close();
});

test("batcher: close settles waiting messages false (the broker redelivers them)", async () => {
  const settled: boolean[] = [];
  const b = new Batcher({
    batchSize: 10,
    maxBatchBytes: 1000,
    maxWaitMs: 60_000,
    concurrency: 1,
    maxUnsettled: 10,
    sink: async () => noOutcome,
    onError: () => {},
    onStored: () => {},
  });
  b.push(msg(1, (ok) => settled.push(ok)));
  await b.close();
  assert.deepEqual(settled, [false]);
});

test("attack: a broker ignores its flow-control limit while the function holds earlier messages → refused, not buffered (QoS 1 acked only at the outcome)", async () => {
  const settled: [number, boolean][] = [];
  const outcomes: (() => void)[] = [];
  let cancelled = 0;
  const b = new Batcher({
    batchSize: 2,
    maxBatchBytes: 1000,
    maxWaitMs: 5,
    concurrency: 1,
    maxUnsettled: 4,
    sink: async () => ({
      outcome: () => new Promise<void>((r) => outcomes.push(r)),
      cancel: () => {
        cancelled++;
      },
    }),
    onError: () => {},
    onStored: () => {},
  });
  assert.ok(b.push(msg(0, (ok) => settled.push([0, ok]), true)));
  assert.ok(b.push(msg(1, (ok) => settled.push([1, ok]), false)));
  for (let i = 0; i < 100 && outcomes.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(settled, [[1, true]], "the QoS 0 message is settled once stored, the QoS 1 one is not");
  // Stored but waiting for its outcome still counts: 1 + 3 = 4, the 5th is refused.
  for (let i = 2; i < 5; i++) assert.ok(b.push(msg(i, (ok) => settled.push([i, ok]), true)));
  assert.equal(b.size, 4);
  assert.equal(b.push(msg(9, () => {}, true)), false, "a broker past its limit cannot make us hold more");
  outcomes[0]!();
  for (let i = 0; i < 100 && settled.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(settled[1], [0, true], "acked once the event reached its outcome");
  for (let i = 0; i < 100 && outcomes.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  // Closing: stored messages whose outcome is unknown are not acked (the broker redelivers).
  await b.close();
  assert.ok(settled.slice(2).every(([, ok]) => !ok));
  assert.equal(settled.length, 5);
  assert.ok(cancelled >= 1);
});

test("batcher: batches are also cut by bytes (a batch must fit one stored event)", async () => {
  const stored: number[] = [];
  const b = new Batcher({
    batchSize: 10,
    maxBatchBytes: 250,
    maxWaitMs: 5,
    concurrency: 1,
    maxUnsettled: 10,
    sink: async (ms) => {
      stored.push(ms.length);
      return noOutcome;
    },
    onError: () => {},
    onStored: () => {},
  });
  for (let i = 0; i < 5; i++)
    b.push({
      subject: "s",
      data: Buffer.alloc(100),
      attributes: {},
      at: 0,
      ackOnOutcome: false,
      settle() {},
    });
  for (let i = 0; i < 100 && stored.reduce((a, x) => a + x, 0) < 5; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(stored, [2, 2, 1]);
  await b.close();
});

test("topic filters, subjects, device ids and reconnect backoff", () => {
  assert.ok(isMqttFilter("sensors/+/temp"));
  assert.ok(isMqttFilter("sensors/#"));
  assert.ok(!isMqttFilter("sensors/#/temp"));
  assert.ok(!isMqttFilter("sensors/a+/temp"));
  assert.ok(isNatsSubject("orders.*.created"));
  assert.ok(isNatsSubject("orders.>"));
  assert.ok(!isNatsSubject("orders.>.x"));
  assert.ok(!isNatsSubject("orders..x"));
  assert.equal(deviceOf("sensors/+/temp", "sensors/d42/temp"), "d42");
  assert.equal(deviceOf("fleet/#", "fleet/a/b", 1), "a");
  assert.equal(deviceOf("fleet/#", "fleet/a/b"), undefined);
  assert.equal(reconnectDelay(1, 1), 500);
  assert.equal(reconnectDelay(3, 1), 2000);
  assert.equal(reconnectDelay(50, 1), 30_000);
  assert.equal(reconnectDelay(50, 0), 15_000);
});

test("trigger config: defaults, and bad input names the field", () => {
  const [t] = validateTriggers([{ type: "mqtt", url: "mqtt://127.0.0.1:1883", topic: "a/+/b" }]);
  assert.deepEqual(t, {
    type: "mqtt",
    url: "mqtt://127.0.0.1:1883",
    topic: "a/+/b",
    qos: 1,
    batchSize: 10,
    maxWaitMs: 1000,
    concurrency: 4,
    maxMessageBytes: 65536,
  });
  const bad: [unknown, RegExp][] = [
    [{ type: "kafka" }, /triggers\[0\]\.type/],
    [{ type: "mqtt", url: "http://x", topic: "a" }, /triggers\[0\]\.url/],
    [{ type: "mqtt", url: "mqtt://h:1883", topic: "a/#/b" }, /triggers\[0\]\.topic/],
    [{ type: "mqtt", url: "mqtt://h:1883", topic: "a", qos: 2 }, /triggers\[0\]\.qos/],
    [{ type: "mqtt", url: "mqtt://h:1883", topic: "a", batchSize: 0 }, /triggers\[0\]\.batchSize/],
    [{ type: "mqtt", url: "mqtt://h:1883", topic: "a", maxWait: "2h" }, /triggers\[0\]\.maxWait/],
    [{ type: "mqtt", url: "mqtt://h:1883", topic: "a", colour: 1 }, /triggers\[0\]\.colour/],
    [{ type: "nats", url: "nats://h:4222" }, /triggers\[0\]\.subject/],
    [{ type: "nats", url: "nats://h:4222", stream: "bad name" }, /triggers\[0\]\.stream/],
  ];
  for (const [raw, re] of bad) assert.throws(() => validateTriggers([raw]), re, JSON.stringify(raw));
  assert.throws(() => validateTriggers("x"), /config\.triggers/);
});

test("a stored batch becomes queue(batch), Lambda Records and binary-mode CloudEvents", () => {
  const payload = batchPayload("mqtt", "mqtt://h:1883 s/+/t", [
    {
      subject: "s/d1/t",
      data: Buffer.from("21.5"),
      attributes: { deviceId: "d1", qos: "1" },
      at: 1000,
      ackOnOutcome: true,
      settle() {},
    },
    {
      subject: "s/d2/t",
      data: Buffer.from([0xff, 0x00]),
      attributes: { deviceId: "d2" },
      at: 2000,
      ackOnOutcome: true,
      settle() {},
    },
  ]);
  const w = parseBatch(payload);
  const { batch, outcome } = toMessageBatch(w);
  const ms = batch.messages as { body: unknown; retry(): void; ack(): void }[];
  assert.equal(ms[0]!.body, "21.5");
  assert.deepEqual(ms[1]!.body, new Uint8Array([0xff, 0x00]));
  ms[0]!.ack();
  ms[1]!.retry();
  assert.equal(outcome().retried.length, 1);
  const ev = toRecordsEvent(w);
  assert.equal(ev.Records[0]!.body, "21.5");
  assert.equal(ev.Records[1]!.bodyEncoding, "base64");
  assert.equal(ev.Records[0]!.eventSource, "nimbus:mqtt");
  const reqs = toCloudEventRequests(w, "http://localhost/", (url, init) => ({ url, ...init }));
  const h = new Map(reqs[0]!.headers);
  assert.equal(h.get("ce-specversion"), "1.0");
  assert.equal(h.get("ce-subject"), "s/d1/t");
  assert.equal(h.get("ce-deviceid"), "d1");
  assert.equal(Buffer.from(reqs[0]!.body).toString(), "21.5");
});

test("attack: a broker announces a 200 MB packet → the guard refuses it before buffering", () => {
  const g = new PacketSizeGuard(70_000);
  // CONNACK (4 bytes) then a PUBLISH header announcing 200,000,000 bytes.
  assert.equal(g.push(Uint8Array.from([0x20, 0x02, 0x00, 0x00])), undefined);
  const len = [0x80, 0x84, 0xaf, 0x5f]; // 200,000,000 as a varint
  assert.match(g.push(Uint8Array.from([0x30, ...len])) ?? "", /200000000-byte packet/);
  // Split headers across chunks are read the same.
  const g2 = new PacketSizeGuard(10);
  assert.equal(g2.push(Uint8Array.from([0x30])), undefined);
  assert.equal(g2.push(Uint8Array.from([0x05, 1, 2])), undefined);
  assert.equal(g2.push(Uint8Array.from([3, 4, 5, 0x30, 0x0b])) !== undefined, true);
});

test("batcher: whenRoom resolves once a held message settles, and at close", async () => {
  const outcomes: (() => void)[] = [];
  const b = new Batcher({
    batchSize: 1,
    maxBatchBytes: 1000,
    maxWaitMs: 5,
    concurrency: 1,
    maxUnsettled: 1,
    sink: async () => ({ outcome: () => new Promise<void>((r) => outcomes.push(r)), cancel() {} }),
    onError: () => {},
    onStored: () => {},
  });
  await b.whenRoom();
  assert.ok(b.push(msg(0, () => {}, true)));
  let room = false;
  const waiting = b.whenRoom().then(() => {
    room = true;
  });
  for (let i = 0; i < 100 && outcomes.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(room, false, "no room while the QoS 1 message waits for its outcome");
  outcomes[0]!();
  await waiting;
  assert.ok(b.push(msg(1, () => {}, true)), "room again once it settled");
  const atClose = b.whenRoom();
  await b.close();
  await atClose;
});
