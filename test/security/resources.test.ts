/**
 * Attacks on the platform's resources (issue 7, point 4): every buffer, queue, log and timer
 * has a bound. Each test runs the attack against a real server (started in this process, so
 * its memory can be measured) and checks that a neighbour function keeps answering.
 * All traffic goes to loopback.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { type AddressInfo, connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test } from "node:test";
import { bundle } from "../../src/build/bundle.ts";
import { CANCELLED_MESSAGE } from "../../src/runtime/protocol.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import { cleanup, sleep } from "../helpers.ts";

const MB = 1024 * 1024;
const MAX_CONNECTIONS = 48;
const MAX_BUFFERED = 24 * MB;

/** Bundles `source` and deploys it as `name` with `config`. */
async function deploy(
  s: RunningServer,
  dir: string,
  name: string,
  source: string,
  config: Record<string, unknown>,
): Promise<void> {
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, source);
  const b = await bundle(file, { executor: (config.executor as "process" | "isolate") ?? "process" });
  const r = await fetch(`${s.url}/api/v1/functions/${name}/versions`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ code: b.code, sourceMap: b.sourceMap, config }),
  });
  assert.equal(r.status, 200, `deploy ${name}: ${await r.text()}`);
}

/** Resident memory of a process, bytes (0 if it is gone). */
function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Every process below this one (instances, isolate hosts, the spawner, bwrap). */
function descendants(): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(d), ppid);
    } catch {
      // Gone meanwhile.
    }
  }
  const out: number[] = [];
  const want = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (want.has(ppid) && !want.has(pid)) {
        want.add(pid);
        out.push(pid);
        grew = true;
      }
    }
  }
  return out;
}

/** GET on the control API with the admin key. */
async function api(s: RunningServer, path: string): Promise<any> {
  const r = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${s.adminKey}` } });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

/** Waits (up to `ms`) until `check` holds. */
async function eventually(check: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await sleep(200);
  }
  return false;
}

/** Opens a raw connection to the server; resolves once connected. */
function connect(url: string): Promise<Socket> {
  const u = new URL(url);
  return new Promise((res, rej) => {
    const sock = netConnect(Number(u.port), u.hostname, () => res(sock));
    sock.on("error", rej);
  });
}

/** Collects what a raw connection receives until it closes or `ms` pass. */
function received(sock: Socket, ms: number): Promise<string> {
  return new Promise((res) => {
    let text = "";
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => {
      text += d;
    });
    const done = (): void => res(text);
    sock.once("close", done);
    setTimeout(done, ms);
  });
}

/**
 * Calls a function, retrying while it answers 429: on a loaded machine a first instance may
 * take longer to start than a request may wait in the queue (not what these tests are about).
 */
async function call(url: string): Promise<Response> {
  const end = Date.now() + 90_000;
  for (;;) {
    const r = await fetch(url);
    if (r.status !== 429 || Date.now() > end) return r;
    await r.arrayBuffer();
    await sleep(500);
  }
}

/** A neighbour's answer: status and body. */
async function neighbour(s: RunningServer): Promise<{ status: number; text: string }> {
  const r = await call(`${s.url}/fn/neighbour/`);
  return { status: r.status, text: await r.text() };
}

const NEIGHBOUR = `export default { fetch: () => new Response("still here") };`;

/** A stream of `total` bytes produced lazily, 64 KB per pull. */
const HUGE_STREAM = `
export default {
  fetch(req: Request) {
    const total = Number(new URL(req.url).searchParams.get("bytes") ?? 0);
    const chunk = new Uint8Array(65536).fill(120);
    let sent = 0;
    return new Response(new ReadableStream({
      pull(c) {
        if (sent >= total) return c.close();
        const n = Math.min(chunk.length, total - sent);
        c.enqueue(n === chunk.length ? chunk.slice() : chunk.slice(0, n));
        sent += n;
      },
    }), { headers: { "content-type": "application/octet-stream" } });
  },
};`;

/**
 * Reads a response at about `bytesPerSecond` for `ms`, then hangs up; while it reads, samples
 * the server's RSS and every descendant's RSS. Returns the bytes read and the peak growth.
 */
async function slowRead(
  url: string,
  bytesPerSecond: number,
  ms: number,
  base: { server: number; procs: Map<number, number> },
): Promise<{ read: number; serverGrowth: number; procGrowth: number; status: number }> {
  let serverPeak = 0;
  let procPeak = 0;
  const sample = (): void => {
    serverPeak = Math.max(serverPeak, process.memoryUsage().rss - base.server);
    for (const [pid, rss0] of base.procs) procPeak = Math.max(procPeak, rssOf(pid) - rss0);
  };
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      let read = 0;
      const started = Date.now();
      const sampler = setInterval(sample, 100);
      res.on("data", (c: Buffer) => {
        read += c.length;
        res.pause();
        // Hold back until the byte budget of the elapsed time allows the next read.
        const due = started + (read / bytesPerSecond) * 1000;
        setTimeout(() => res.resume(), Math.max(0, due - Date.now()));
      });
      res.on("error", () => {});
      setTimeout(() => {
        sample();
        clearInterval(sampler);
        req.destroy();
        resolve({ read, serverGrowth: serverPeak, procGrowth: procPeak, status: res.statusCode ?? 0 });
      }, ms);
    });
    req.on("error", (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

describe("attacks on resources", { concurrency: false }, () => {
  let s: RunningServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nimbus-resources-"));
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      maxConnections: MAX_CONNECTIONS,
      maxBufferedBodyBytes: MAX_BUFFERED,
      // The fetch attack's upstream listens on loopback (started by the test).
      isolateEgress: { default: "deny", allow: ["127.0.0.1"] },
      // The operator grants that loopback address (the server's egress ceiling).
      egressAllow: ["127.0.0.1/32"],
    });
    await deploy(s, dir, "neighbour", NEIGHBOUR, { executor: "isolate" });
  });
  after(async () => {
    await s?.close();
    cleanup(dir);
  });

  for (const executor of ["process", "isolate"] as const) {
    test(`attack: a slow reader pulls a 1.5 GB ${executor} stream → the function pauses, memory stays flat`, async (t) => {
      const name = `huge-${executor}`;
      await deploy(s, dir, name, HUGE_STREAM, { executor, timeout: "60s" });
      // Warm: the instance (or isolate host) exists before the baseline is taken. On a loaded
      // machine the first start may outlast the queue wait (429): retry until it serves.
      let warmBody = Buffer.alloc(0);
      const warmed = await eventually(async () => {
        const warm = await fetch(`${s.url}/fn/${name}/?bytes=${4 * MB}`);
        warmBody = Buffer.from(await warm.arrayBuffer());
        return warm.status === 200;
      }, 90_000);
      assert.ok(warmed, warmBody.subarray(0, 300).toString());
      assert.equal(warmBody.byteLength, 4 * MB);
      global.gc?.();
      await sleep(200);
      const procs = new Map<number, number>();
      for (const pid of descendants()) procs.set(pid, rssOf(pid));
      const base = { server: process.memoryUsage().rss, procs };
      const r = await slowRead(`${s.url}/fn/${name}/?bytes=${1536 * MB}`, 100 * 1024, 5000, base);
      t.diagnostic(
        `read ${(r.read / 1024).toFixed(0)} KB; server RSS +${(r.serverGrowth / MB).toFixed(1)} MB, instance/host RSS +${(r.procGrowth / MB).toFixed(1)} MB`,
      );
      assert.equal(r.status, 200);
      assert.ok(r.read > 100 * 1024, `the reader got ${r.read} bytes`);
      // Without backpressure the function streams at full speed into the platform: hundreds
      // of MB within these seconds. With it, at most a window per hop is held.
      assert.ok(r.serverGrowth < 64 * MB, `server RSS grew by ${(r.serverGrowth / MB).toFixed(1)} MB`);
      assert.ok(r.procGrowth < 64 * MB, `instance/host RSS grew by ${(r.procGrowth / MB).toFixed(1)} MB`);
      // The caller hung up: the function's stream is cancelled, not streamed into the void.
      const cancelled = await eventually(async () => {
        const { lines } = await api(s, `/api/v1/functions/${name}/logs?limit=50`);
        return lines.some((l: { msg: string }) => l.msg.includes(CANCELLED_MESSAGE));
      });
      assert.ok(cancelled, "the invocation ends when its caller hangs up");
      const n = await neighbour(s);
      assert.equal(n.status, 200);
      assert.equal(n.text, "still here");
    });
  }

  test("attack: many callers send 6 MB bodies at once and stall → 503 past the buffered-bytes cap", async (t) => {
    await deploy(
      s,
      dir,
      "sink",
      `export default { fetch: async (r: Request) => new Response(String((await r.arrayBuffer()).byteLength)) };`,
      { executor: "isolate" },
    );
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const socks: Socket[] = [];
    const answers: Promise<string>[] = [];
    // 12 callers × 5 MB held = 60 MB wanted, against a 24 MB cap.
    const part = Buffer.alloc(5 * MB, 97);
    for (let i = 0; i < 12; i++) {
      const sock = await connect(s.url);
      socks.push(sock);
      answers.push(received(sock, 8000));
      sock.write(`POST /fn/sink/ HTTP/1.1\r\nhost: x\r\ncontent-length: ${6 * MB}\r\n\r\n`);
      sock.write(part);
    }
    await sleep(2000);
    const rss = process.memoryUsage().rss - rss0;
    for (const sock of socks) sock.destroy();
    const texts = await Promise.all(answers);
    const refused = texts.filter((x) => x.startsWith("HTTP/1.1 503"));
    t.diagnostic(`${refused.length} of 12 refused; server RSS +${(rss / MB).toFixed(1)} MB`);
    assert.ok(refused.length >= 6, `at least half are refused, got ${refused.length}`);
    for (const x of refused) {
      assert.match(x, /retry-after: \d+/i);
      assert.match(x, /NIMBUS_OVERLOADED/);
    }
    // 60 MB were sent; at most the cap (plus socket buffers) is held.
    assert.ok(rss < MAX_BUFFERED + 32 * MB, `server RSS grew by ${(rss / MB).toFixed(1)} MB`);
    // The stalled callers are gone: their bytes were given back, so a real body goes through.
    const ok = await eventually(async () => {
      const r = await fetch(`${s.url}/fn/sink/`, { method: "POST", body: Buffer.alloc(5 * MB, 98) });
      return r.status === 200 && (await r.text()) === String(5 * MB);
    }, 10_000);
    assert.ok(ok, "a 5 MB body is accepted once the stalled callers left");
    const n = await neighbour(s);
    assert.equal(n.status, 200);
  });

  test("attack: a caller opens connections without end → 503 with Retry-After past the connection cap", async (t) => {
    const socks: Socket[] = [];
    const answers: Promise<string>[] = [];
    for (let i = 0; i < MAX_CONNECTIONS + 10; i++) {
      const sock = await connect(s.url);
      socks.push(sock);
      answers.push(received(sock, 3000));
    }
    const texts = await Promise.all(answers);
    const refused = texts.filter((x) => x.startsWith("HTTP/1.1 503"));
    t.diagnostic(`${refused.length} of ${socks.length} connections refused`);
    assert.ok(refused.length >= 10, `the connections past the cap are refused, got ${refused.length}`);
    for (const x of refused) {
      assert.match(x, /retry-after: \d+/i);
      assert.match(x, /NIMBUS_OVERLOADED/);
    }
    for (const sock of socks) sock.destroy();
    // Once the flood is gone the server serves again.
    const ok = await eventually(async () => (await neighbour(s).catch(() => ({ status: 0 }))).status === 200);
    assert.ok(ok, "the neighbour answers once the flood is gone");
  });

  test("attack: a function floods its log → one invocation keeps its quota, the rest is counted in one marker", async (t) => {
    await deploy(
      s,
      dir,
      "flood",
      `export default { fetch() {
        for (let i = 0; i < 100000; i++) console.log("flood " + i + " " + "x".repeat(100));
        return new Response("flooded");
      } };`,
      { executor: "process", timeout: "60s" },
    );
    const r = await call(`${s.url}/fn/flood/`);
    assert.equal(r.status, 200);
    const id = r.headers.get("x-nimbus-invocation-id")!;
    const stored = await eventually(async () => {
      const { lines } = await api(s, `/api/v1/functions/flood/logs?invocation=${id}&limit=10`);
      return lines.some((l: { msg: string }) => l.msg.startsWith("[nimbus]"));
    });
    assert.ok(stored, "the marker line is stored");
    const db = new DatabaseSync(join(s.dataDir, "nimbus.db"), { readOnly: true });
    try {
      const count = Number(
        db.prepare("SELECT COUNT(*) AS n FROM logs WHERE invocation_id = ?").get(id)?.n ?? 0,
      );
      const markers = db
        .prepare("SELECT msg FROM logs WHERE invocation_id = ? AND msg LIKE '[nimbus]%'")
        .all(id) as { msg: string }[];
      t.diagnostic(`stored ${count} lines; marker: ${markers[0]?.msg}`);
      // 10,000 lines (the per-invocation quota) and exactly one marker counting the rest.
      assert.equal(count, 10_001);
      assert.equal(markers.length, 1);
      assert.match(markers[0]!.msg, /^\[nimbus\] 90000 log lines dropped \(quota per invocation/);
    } finally {
      db.close();
    }
    const n = await neighbour(s);
    assert.equal(n.status, 200);
  });

  test("attack: a function writes raw 15 MB log frames to fd 3 → refused at the frame header: 502, nothing of it stored", async () => {
    await deploy(
      s,
      dir,
      "rawlog",
      `import { writeSync } from "node:fs";
      export default { fetch() {
        const meta = Buffer.from(JSON.stringify({ level: "info", t: Date.now(), msg: "y".repeat(15 * 1024 * 1024) }));
        const frame = Buffer.alloc(13 + meta.length);
        frame.writeUInt32LE(9 + meta.length, 0);
        frame.writeUInt8(9, 4); // LOG
        frame.writeUInt32LE(0, 5); // outside any invocation
        frame.writeUInt32LE(meta.length, 9);
        meta.copy(frame, 13);
        // fd 3 is non-blocking: write the whole frame, retrying while the platform reads.
        const writeAll = (b: Buffer) => {
          for (let off = 0; off < b.length; ) {
            try {
              off += writeSync(3, b, off);
            } catch (e) {
              if ((e as { code?: string }).code !== "EAGAIN") throw e;
            }
          }
        };
        for (let i = 0; i < 3; i++) writeAll(frame);
        return new Response("wrote");
      } };`,
      { executor: "process", memory: 512, timeout: "60s" },
    );
    // The frame guard reads the length prefix and refuses the frame before buffering it: the
    // instance is stopped (it speaks the protocol wrongly), nothing of the line is stored.
    const r = await call(`${s.url}/fn/rawlog/`);
    assert.equal(r.status, 502);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    const before = process.memoryUsage().rss;
    await api(s, "/api/v1/functions/rawlog/logs?limit=1"); // flushes the recorder
    const db = new DatabaseSync(join(s.dataDir, "nimbus.db"), { readOnly: true });
    try {
      const stored = Number(
        db.prepare("SELECT COUNT(*) AS n FROM logs WHERE fn = 'rawlog' AND msg LIKE 'yyy%'").get()?.n,
      );
      assert.equal(stored, 0, "no part of the oversized line is stored");
    } finally {
      db.close();
    }
    assert.ok(process.memoryUsage().rss - before < 64 * MB, "the server did not buffer the frames");
    const n = await neighbour(s);
    assert.equal(n.status, 200);
  });

  test("attack: an isolate sets 100,000 timers → RangeError at the cap, released when the invocation ends", async (t) => {
    await deploy(
      s,
      dir,
      "timers",
      `export default { fetch() {
        let n = 0;
        try {
          for (; n < 100000; n++) setTimeout(() => {}, 3_600_000);
          return new Response("no cap");
        } catch (e) {
          return Response.json({ n, name: (e as Error).name, message: (e as Error).message });
        }
      } };`,
      { executor: "isolate" },
    );
    const first = await call(`${s.url}/fn/timers/`);
    assert.equal(first.status, 200);
    const procs = new Map<number, number>();
    for (const pid of descendants()) procs.set(pid, rssOf(pid));
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${s.url}/fn/timers/`);
      assert.equal(r.status, 200);
      const out = (await r.json()) as { n: number; name: string; message: string };
      assert.equal(out.name, "RangeError");
      assert.match(out.message, /NIMBUS_TIMER_LIMIT/);
      // The previous invocation's timers were released: each one gets the full allowance.
      assert.equal(out.n, 1000);
    }
    let growth = 0;
    for (const [pid, rss0] of procs) growth = Math.max(growth, rssOf(pid) - rss0);
    t.diagnostic(`isolate host RSS +${(growth / MB).toFixed(1)} MB over 5 invocations`);
    assert.ok(growth < 64 * MB, `host RSS grew by ${(growth / MB).toFixed(1)} MB`);
    const n = await neighbour(s);
    assert.equal(n.status, 200);
  });

  test("attack: an isolate starts 200 fetches that never answer → RangeError past 32, aborted when it ends", async () => {
    const open = new Set<Socket>();
    const upstream = createServer(() => {
      // Never answers.
    });
    upstream.on("connection", (sock: Socket) => {
      open.add(sock);
      sock.on("close", () => open.delete(sock));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/hang`;
    try {
      await deploy(
        s,
        dir,
        "fetches",
        `export default { async fetch() {
          const pending = [];
          for (let i = 0; i < 200; i++) pending.push(fetch("${target}").then(() => "answered", (e) => e.name + ": " + e.message));
          const settled = await Promise.all(pending.map((p) => Promise.race([p, new Promise((r) => setTimeout(() => r("pending"), 1500))])));
          return Response.json({
            pending: settled.filter((x) => x === "pending").length,
            limited: settled.filter((x) => String(x).startsWith("RangeError") && String(x).includes("NIMBUS_FETCH_LIMIT")).length,
          });
        } };`,
        { executor: "isolate", timeout: "20s" },
      );
      const r = await call(`${s.url}/fn/fetches/`);
      assert.equal(r.status, 200);
      const out = (await r.json()) as { pending: number; limited: number };
      assert.deepEqual(out, { pending: 32, limited: 168 });
      // The invocation is over: its fetches are aborted and their connections closed.
      const closed = await eventually(async () => open.size === 0, 10_000);
      assert.ok(closed, `${open.size} upstream connections still open`);
    } finally {
      upstream.closeAllConnections();
      upstream.close();
    }
    const n = await neighbour(s);
    assert.equal(n.status, 200);
  });
});
