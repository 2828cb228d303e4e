/**
 * NATS triggers against the real nats-server at 127.0.0.1:4222 (skipped with a reason when
 * it is absent, failing when CI=true): core subjects with a queue group, JetStream durable
 * consumers with explicit ack (acked once the batch succeeded), size limits, an unreachable
 * server (state retrying, server fine). Streams are uniquely named and deleted after.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect as netConnect, createServer } from "node:net";
import { after, before, describe, test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

const SERVER = "nats://127.0.0.1:4222";

async function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

const up = await reachable(4222);
if (!up && process.env.CI === "true")
  throw new Error("nats-server is not running at 127.0.0.1:4222 and CI=true");
const skip = up ? false : "nats-server is not running at 127.0.0.1:4222 (see STYLE.md for the command)";

let s: TestServer;
let nc: NatsConnection;
const id = randomBytes(4).toString("hex");
const prefix = `nimbus-test-${id}`;
const streams: string[] = [];

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

async function stream(suffix: string): Promise<string> {
  const name = `NIMBUS_T_${id}_${suffix}`;
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${prefix}.${suffix}.>`] });
  streams.push(name);
  return name;
}

describe("NATS triggers", { skip }, () => {
  before(async () => {
    s = await startTestServer();
    nc = await connect({ servers: "127.0.0.1:4222" });
  });
  after(async () => {
    if (nc) {
      const jsm = await jetstreamManager(nc);
      for (const n of streams) await jsm.streams.delete(n).catch(() => {});
      await nc.close();
    }
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  test("a core subject with a queue group: the function shares the messages with another member of its group", async () => {
    const d = await s.deploy("na-core", "triggers/workers-queue.ts", {
      triggers: [{ type: "nats", url: SERVER, subject: `${prefix}.core.*`, queue: "grp", maxWait: 0.1 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("na-core", "connected");
    // Another member of the same queue group: each message goes to one of the two.
    const other: string[] = [];
    nc.subscribe(`${prefix}.core.*`, {
      queue: "grp",
      callback: (_e, m) => {
        other.push(m.string());
      },
    });
    await nc.flush();
    for (let i = 0; i < 40; i++) nc.publish(`${prefix}.core.dev${i % 4}`, `n${i}`);
    await nc.flush();
    const t = await until("40 messages split between the two members", async () => {
      const x = await triggerOf("na-core");
      return x.stored + other.length === 40 ? x : undefined;
    });
    assert.ok(t.stored > 0 && other.length > 0, `function ${t.stored}, other member ${other.length}`);
    const lines = await logLines("na-core", /^msg /, t.stored);
    assert.equal(lines.length, t.stored);
    assert.ok(
      lines.every((l) => new RegExp(`topic=${prefix}\\.core\\.dev\\d`).test(l)),
      lines[0],
    );
    const seen = new Set([...lines.map((l) => /body=(\S+)/.exec(l)![1]), ...other]);
    assert.equal(seen.size, 40, "each message went to exactly one member");
  });

  test("a JetStream consumer (explicit ack): Lambda Records, every message acked once its batch succeeded", async () => {
    const name = await stream("js");
    const d = await s.deploy("na-js", "triggers/lambda-records.ts", {
      triggers: [{ type: "nats", url: SERVER, stream: name, consumer: "na-js", batchSize: 4, maxWait: 0.2 }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("na-js", "connected");
    const js = jetstream(nc);
    for (let i = 0; i < 10; i++) await js.publish(`${prefix}.js.order${i}`, JSON.stringify({ i }));
    const records = await until("ten records", async () => {
      const r = await s.api("GET", "/api/v1/functions/na-js/async-invocations?limit=50");
      const all = r.body.invocations
        .filter((i: any) => i.state === "succeeded")
        .flatMap((i: any) => JSON.parse(i.result.body).records);
      return all.length >= 10 ? all : undefined;
    });
    assert.equal(records.length, 10);
    assert.ok(records.every((r: any) => r.source === "nimbus:nats" && r.stream === name));
    assert.deepEqual(
      records.map((r: any) => JSON.parse(r.body).i).sort((a: number, b: number) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
    const info = await until("all acked", async () => {
      const c = await (await jetstreamManager(nc)).consumers.info(name, "na-js");
      return c.num_ack_pending === 0 && c.num_pending === 0 && c.delivered.stream_seq === 10 ? c : undefined;
    });
    assert.equal(info.config.ack_policy, "explicit");
  });

  test("JetStream: messages published while the server is stopped are delivered after it restarts", async () => {
    const name = await stream("restart");
    const cfg = {
      triggers: [{ type: "nats", url: SERVER, stream: name, consumer: "na-rs", maxWait: 0.1 }],
    };
    const d = await s.deploy("na-rs", "triggers/workers-queue.ts", cfg);
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("na-rs", "connected");
    const js = jetstream(nc);
    await js.publish(`${prefix}.restart.a`, "first");
    await logLines("na-rs", /body=first/, 1);
    const dir = s.dataDir;
    await s.stop();
    await js.publish(`${prefix}.restart.a`, "while-down");
    s = await startTestServer({ dataDir: dir });
    await logLines("na-rs", /body=while-down/, 1);
  });

  test("attack: a publisher sends a message over maxMessageBytes → it is terminated and counted, the next arrives", async () => {
    const name = await stream("big");
    const d = await s.deploy("na-big", "triggers/workers-queue.ts", {
      triggers: [
        { type: "nats", url: SERVER, stream: name, consumer: "na-big", maxMessageBytes: 100, maxWait: 0.05 },
      ],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    await triggerOf("na-big", "connected");
    const js = jetstream(nc);
    await js.publish(`${prefix}.big.a`, "x".repeat(5000));
    await js.publish(`${prefix}.big.a`, "small");
    const lines = await logLines("na-big", /^msg /, 1);
    assert.match(lines[0]!, /body=small/);
    assert.equal(lines.length, 1);
    const t = await triggerOf("na-big");
    assert.equal(t.dropped, 1);
    const c = await until("nothing pending", async () => {
      const x = await (await jetstreamManager(nc)).consumers.info(name, "na-big");
      if (x.num_ack_pending !== 0) throw new Error(JSON.stringify({ ...x, config: undefined }));
      return x;
    });
    assert.equal(c.num_redelivered, 0, "the oversize message is not redelivered");
  });

  test("a server nobody listens at: state retrying with the last error, the server keeps serving", async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as { port: number }).port;
    await new Promise((r) => srv.close(r));
    const d = await s.deploy("na-down", "triggers/workers-queue.ts", {
      triggers: [{ type: "nats", url: `nats://127.0.0.1:${port}`, subject: "a.b" }],
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const t = await until("retries", async () => {
      const x = await triggerOf("na-down", "retrying");
      return x.retries >= 2 ? x : undefined;
    });
    assert.ok(t.lastError, "the last error is shown");
    const r = await fetch(`${s.url}/fn/na-down`);
    assert.equal(await r.text(), "ok");
    const cli = await s.cli(["triggers", "ls", "-f", "na-down"]);
    assert.match(cli.stdout, /na-down .*nats .*retrying/);
  });
});
