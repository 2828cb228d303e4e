/**
 * Issue 7, point 1: everything an instance sends the platform is untrusted input, checked in
 * one place (src/invoker/frame-guard.ts) for both executors. A violation stops that instance
 * (NIMBUS_INSTANCE_PROTOCOL, 502); the server keeps serving.
 *
 * Three layers: the guard alone (property tests over thousands of frames, split anywhere),
 * a real process instance whose function writes raw frames to its control channel (fd 3),
 * and a real isolate host whose channel gets forged frames written into it — through the
 * host's own socket, taken with pidfd_getfd(2), as a tenant that escaped its isolate would.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { validateHeaderName, validateHeaderValue } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import {
  FrameGuard,
  INSTANCE_RULES,
  ISOLATE_HOST_RULES,
  MAX_HEADERS,
} from "../../src/invoker/frame-guard.ts";
import { TI } from "../../src/runtime/isolate/frames.ts";
import { encodeFrame, type Frame, MAX_LOG_LINE, T } from "../../src/runtime/protocol.ts";
import { cleanup, deployIsolateSource, startTestServer, type TestServer } from "../helpers.ts";
import { attackBatch, type FuzzFrame, joinFrames, rawFrame, withId } from "./frame-fuzz.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-frames-"));
after(() => cleanup(dir));

/** Feeds `bytes` to a fresh guard in the given pieces; returns what came out. */
function run(bytes: Buffer, cuts: number[], rules = INSTANCE_RULES, open = [7]) {
  const frames: Frame[] = [];
  const violations: string[] = [];
  let afterViolation = 0;
  const guard = new FrameGuard({
    rules,
    onFrame: (f) => {
      if (violations.length > 0) afterViolation++;
      frames.push(f);
    },
    onViolation: (why) => violations.push(why),
  });
  for (const id of open) guard.open(id);
  let prev = 0;
  for (const c of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    if (c > prev) guard.push(bytes.subarray(prev, c));
    prev = c;
  }
  return { frames, violations, afterViolation };
}

describe("the frame guard", () => {
  test("random and mutated frames, split anywhere: the guard never throws and passes only what the gateway can write", () => {
    let sent = 0;
    const accepted = new Map<number, number>();
    for (const rules of [INSTANCE_RULES, ISOLATE_HOST_RULES]) {
      fc.assert(
        fc.property(
          attackBatch(1, 20),
          fc.array(fc.nat(4000), { maxLength: 6 }),
          (frames: FuzzFrame[], cuts: number[]) => {
            sent += frames.length;
            const {
              frames: out,
              violations,
              afterViolation,
            } = run(withId(joinFrames(frames), 7), cuts, rules);
            assert.ok(violations.length <= 1);
            assert.equal(afterViolation, 0);
            for (const f of out) {
              accepted.set(f.type, (accepted.get(f.type) ?? 0) + 1);
              if (f.type === T.RESP_HEAD) {
                const { status, headers } = f.meta as { status: number; headers: [string, string][] };
                assert.ok(Number.isInteger(status) && status >= 200 && status <= 599, `status ${status}`);
                assert.ok(headers.length <= MAX_HEADERS);
                for (const [k, v] of headers) {
                  validateHeaderName(k);
                  validateHeaderValue(k, v);
                  assert.ok(!k.startsWith("x-nimbus-"), k);
                }
              } else if (f.type === T.LOG) {
                const m = f.meta as { level: string; t: number; msg: unknown };
                assert.equal(typeof m.msg, "string");
                assert.ok((m.msg as string).length <= MAX_LOG_LINE + 64);
                assert.ok(["debug", "info", "warn", "error"].includes(m.level));
                assert.ok(Number.isFinite(m.t));
              } else if (f.type === T.INVOKE_ERROR) {
                assert.ok(["NIMBUS_FUNCTION_ERROR", "NIMBUS_BAD_RESPONSE"].includes(f.meta.code));
              } else if (f.type === T.RESP_END || f.type === T.DONE) {
                assert.ok(Number.isFinite(f.meta.cpuMs));
              }
            }
          },
        ),
        { numRuns: 400 },
      );
    }
    assert.ok(sent > 3000, `${sent} frames`);
    // Not vacuous: frames of each kind got through the checks.
    for (const t of [T.RESP_HEAD, T.RESP_CHUNK, T.RESP_END, T.INVOKE_ERROR, T.LOG]) {
      assert.ok((accepted.get(t) ?? 0) > 0, `no frame of type ${t} passed: ${JSON.stringify([...accepted])}`);
    }
  });

  test("what the runtimes really send passes, however the reads split it", () => {
    const seq = Buffer.concat([
      encodeFrame(T.READY, 0, { pid: 1 }),
      encodeFrame(T.LOADED, 0, { ok: true, shape: "fetch-object", loadMs: 3, config: { memory: 128 } }),
      encodeFrame(T.LOG, 7, { level: "info", t: Date.now(), msg: "x".repeat(MAX_LOG_LINE + 5) }),
      encodeFrame(T.RESP_HEAD, 7, {
        status: 200,
        headers: [
          ["content-type", "text/plain; charset=utf-8"],
          ["X-Nimbus-Version", "999"],
          ["set-cookie", "a=1; Path=/"],
        ],
      }),
      encodeFrame(T.RESP_CHUNK, 7, undefined, Buffer.from("hello")),
      encodeFrame(T.RESP_END, 7, { cpuMs: 1.5, pending: true }),
      encodeFrame(T.DONE, 7, { cpuMs: 2 }),
      encodeFrame(T.LOG, 0, { level: "warn", t: Date.now(), msg: "after" }),
    ]);
    for (const cut of [1, 3, 5, 13, 40, 200, seq.length - 1]) {
      const { frames, violations } = run(seq, [cut, cut + 7]);
      assert.deepEqual(violations, []);
      assert.deepEqual(
        frames.map((f) => f.type),
        [T.READY, T.LOADED, T.LOG, T.RESP_HEAD, T.RESP_CHUNK, T.RESP_END, T.DONE, T.LOG],
      );
      const head = frames[3]!.meta as { headers: [string, string][] };
      assert.deepEqual(
        head.headers.map(([k]) => k),
        ["content-type", "set-cookie"],
      );
      assert.ok((frames[2]!.meta.msg as string).endsWith(`[cut: ${MAX_LOG_LINE + 5} characters]`));
    }
  });

  test("attack: instance announces a 15 MB log frame → refused at its 5-byte header, nothing buffered", () => {
    const head = Buffer.alloc(5);
    head.writeUInt32LE(15 * 1024 * 1024, 0);
    head.writeUInt8(T.LOG, 4);
    const { violations } = run(head, []);
    assert.equal(violations.length, 1);
    assert.match(violations[0]!, /type 9 and 15728640 bytes/);
  });

  test("attack: instance sends a frame type only the platform sends → violation", () => {
    const { violations } = run(encodeFrame(T.INVOKE, 7, {}), []);
    assert.match(violations[0]!, /not one an instance may send/);
  });

  test("attack: isolate host sends malformed fetch spans (forged id, header-breaking host, bad status) → violation", () => {
    const good = {
      spanId: "00f067aa0ba902b7",
      host: "api.example.com",
      port: 443,
      method: "get",
      scheme: "https",
      startMs: 1,
      endMs: 2,
      status: 200,
      propagated: true,
    };
    const ok = run(encodeFrame(TI.SPAN, 7, good), [], ISOLATE_HOST_RULES);
    assert.deepEqual(ok.violations, []);
    assert.equal(ok.frames[0]!.meta.method, "GET");
    for (const bad of [
      { spanId: "not-hex-at-all!!" },
      { spanId: "00f067aa0ba902b7aa" },
      { host: "evil.com\r\nx-injected: 1" },
      { host: "x".repeat(300) },
      { method: "GET /admin" },
      { status: 1e9 },
      { port: 0 },
      { startMs: -1 },
      { scheme: "file" },
      { propagated: "yes" },
    ]) {
      const { violations, frames } = run(
        encodeFrame(TI.SPAN, 7, { ...good, ...bad }),
        [],
        ISOLATE_HOST_RULES,
      );
      assert.equal(violations.length, 1, JSON.stringify(bad));
      assert.equal(frames.length, 0);
    }
    // A process instance has no business sending spans: only the isolate host's bridge measures fetches.
    assert.match(run(encodeFrame(TI.SPAN, 7, good), []).violations[0]!, /not one an instance may send/);
  });
});

// ---------------------------------------------------------------------------------------------
// A real process instance writing raw frames to its own control channel.

/** A function that writes the request body to fd 3 (its id set where `x-id-at` says), then answers. */
const RAW_WRITER = `import { Socket } from "node:net";
let served = 0;
function channel(): Socket {
  for (const h of (process as any)._getActiveHandles() as unknown[]) {
    if (h instanceof Socket && (h as any)._handle?.fd === 3) return h;
  }
  throw new Error("no control channel");
}
export default {
  async fetch(request: Request) {
    // Invocations on a process instance are numbered 1, 2, 3… on its channel.
    const id = ++served;
    const big = Number(request.headers.get("x-big") ?? 0);
    if (big > 0) {
      const head = Buffer.alloc(13);
      head.writeUInt32LE(big, 0);
      head.writeUInt8(9, 4);
      head.writeUInt32LE(id, 5);
      channel().write(head);
      channel().write(Buffer.alloc(big - 9, 97));
      return new Response("sent a big frame");
    }
    const bytes = Buffer.from(await request.arrayBuffer());
    const at = request.headers.get("x-id-at");
    if (at) for (const off of at.split(",")) bytes.writeUInt32LE(id, Number(off));
    channel().write(bytes);
    return new Response("written " + id);
  },
};
`;

const NEIGHBOUR = `export default { fetch: () => new Response("alive") };`;

async function deploySource(s: TestServer, name: string, source: string, config: Record<string, unknown>) {
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, source);
  const r = await s.deploy(name, file, config);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

/** A request that may fail at the connection (an instance's response can be cut). */
async function attempt(url: string, init?: RequestInit): Promise<{ status: number; text: string }> {
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(90_000) });
    return { status: r.status, text: await r.text() };
  } catch (err) {
    return { status: 0, text: String(err) };
  }
}

async function assertServing(s: TestServer, path = "/fn/neighbour"): Promise<void> {
  assert.equal(s.proc.exitCode, null, `the server exited:\n${s.stdout().slice(-2000)}`);
  const r = await attempt(`${s.url}${path}`);
  assert.deepEqual(r, { status: 200, text: "alive" }, `${path} after an attack`);
}

describe("a process instance writing its own frames to fd 3", () => {
  let s: TestServer;
  before(async () => {
    // A cold start can take seconds on a loaded machine: let requests wait for it.
    s = await startTestServer({ args: ["--queue-wait", "120000"] });
    await deploySource(s, "neighbour", NEIGHBOUR, {});
    await deploySource(s, "raw", RAW_WRITER, { timeout: "3s" });
  });
  after(async () => {
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  /** Has the `raw` function write `frames` (ids set to its own invocation's). */
  function send(frames: FuzzFrame[]) {
    const f = joinFrames(frames);
    return attempt(`${s.url}/fn/raw`, {
      method: "POST",
      headers: { "x-id-at": f.idAt.join(",") },
      body: new Uint8Array(f.bytes),
    });
  }

  const cur = (type: number, meta: unknown): FuzzFrame => ({
    bytes: rawFrame(type, 0, JSON.stringify(meta), Buffer.alloc(0)),
    idAt: [5],
  });

  async function assertStopped(frames: FuzzFrame[]): Promise<void> {
    const r = await send(frames);
    assert.equal(r.status, 502, r.text);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    await assertServing(s);
    await assertServing(s, "/fn/raw-ok");
  }

  before(async () => {
    await deploySource(s, "raw-ok", NEIGHBOUR, {});
  });

  test("a healthy write-nothing request works (the harness is sound)", async () => {
    const r = await send([]);
    assert.equal(r.status, 200);
    assert.match(r.text, /^written \d+$/);
  });

  test("attack: function sends a response head with status 42 → its instance stopped, 502, server serves", async () => {
    await assertStopped([cur(T.RESP_HEAD, { status: 42, headers: [] })]);
  });

  test("attack: function sends a header value holding CRLF → instance stopped, 502, no header injected", async () => {
    const r = await send([
      cur(T.RESP_HEAD, { status: 200, headers: [["x-ok", "1\r\nset-cookie: stolen=1"]] }),
    ]);
    assert.equal(r.status, 502, r.text);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    await assertServing(s);
  });

  test("attack: function sends headers that are not a list → instance stopped, 502, server serves", async () => {
    await assertStopped([cur(T.RESP_HEAD, { status: 200, headers: { a: "b" } })]);
  });

  test("attack: function raises an error code it may not (NIMBUS_INTERNAL) → instance stopped, 502", async () => {
    await assertStopped([cur(T.INVOKE_ERROR, { code: "NIMBUS_INTERNAL", message: "x", cpuMs: 0 })]);
  });

  test("attack: function sends a log line whose msg is not a string → instance stopped, records kept", async () => {
    await assertStopped([cur(T.LOG, { level: "info", t: Date.now(), msg: { not: "a string" } })]);
    // Metering still works for everyone: the neighbour's invocations are recorded.
    let recorded = 0;
    for (let i = 0; i < 50 && recorded === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await s.api("GET", "/api/v1/functions/neighbour/invocations");
      recorded = Array.isArray(r.body?.invocations) ? r.body.invocations.length : 0;
    }
    assert.ok(recorded > 0, "the neighbour's invocations were recorded");
  });

  test("attack: function writes a 15 MB raw log frame → refused from its header, instance stopped", async () => {
    const r = await attempt(`${s.url}/fn/raw`, { headers: { "x-big": String(15 * 1024 * 1024) } });
    assert.equal(r.status, 502, r.text);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    await assertServing(s);
  });

  test("attack: function sets its own x-nimbus-* headers → dropped, the platform's stay", async () => {
    const f = joinFrames([
      cur(T.RESP_HEAD, {
        status: 200,
        headers: [
          ["x-nimbus-version", "999"],
          ["X-Nimbus-Billed-Ms", "0"],
          ["x-mine", "1"],
        ],
      }),
      // The response ends here: the runtime's own head, later, is for a finished invocation.
      cur(T.RESP_END, { cpuMs: 0, pending: false }),
    ]);
    const r = await fetch(`${s.url}/fn/raw`, {
      method: "POST",
      headers: { "x-id-at": f.idAt.join(",") },
      body: new Uint8Array(f.bytes),
    });
    await r.text();
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-mine"), "1");
    assert.equal(r.headers.get("x-nimbus-billed-ms"), null);
    assert.notEqual(r.headers.get("x-nimbus-version"), "999");
    assert.ok(r.headers.get("x-nimbus-invocation-id"));
  });

  test("fuzz: thousands of random and mutated frames from a real instance → the server never exits, healthy requests succeed", {
    timeout: 900_000,
  }, async () => {
    const t0 = Date.now();
    let frames = 0;
    let requests = 0;
    const outcomes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(attackBatch(60, 90), async (batch) => {
        frames += batch.length;
        requests++;
        const r = await send(batch);
        outcomes.set(r.status, (outcomes.get(r.status) ?? 0) + 1);
        // An answer (any status), or a cut connection after the head — never a dead server.
        assert.ok([0, 200, 502, 504].includes(r.status) || (r.status >= 200 && r.status <= 599), r.text);
        await assertServing(s);
      }),
      // No shrinking: each run costs real instance starts.
      { numRuns: 25, endOnFailure: true },
    );
    await assertServing(s, "/fn/raw-ok");
    process.stderr.write(
      `process fuzz: ${frames} frames in ${requests} requests, ${Date.now() - t0} ms, outcomes ${JSON.stringify([...outcomes])}\n`,
    );
    assert.ok(frames >= 25 * 60, `${frames} frames`);
  });
});

// ---------------------------------------------------------------------------------------------
// A real isolate host whose channel carries forged frames.

/**
 * Writes bytes into another process's file descriptor: duplicates it with pidfd_getfd(2)
 * (Linux 5.6+, needs ptrace rights: root here), as code running in that process could.
 * Reads `pid u32 · fd u32 · length u32 · bytes` records from stdin, answers one byte each
 * (`k`: written, or the platform hung up on the host mid-write; `e`: could not write).
 */
const INJECTOR = `
import ctypes, os, select, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fds = {}
inp, out = sys.stdin.buffer, sys.stdout.buffer
def read(n):
    b = b""
    while len(b) < n:
        c = inp.read(n - len(b))
        if not c: sys.exit(0)
        b += c
    return b
while True:
    pid, target, n = struct.unpack("<III", read(12))
    data = read(n)
    try:
        key = (pid, target)
        if key not in fds:
            # A new host: let go of the old ones' sockets.
            for old in fds.values(): os.close(old)
            fds.clear()
            pfd = libc.syscall(434, pid, 0)
            if pfd < 0: raise OSError(ctypes.get_errno(), "pidfd_open")
            fd = libc.syscall(438, pfd, target, 0)
            if fd < 0: raise OSError(ctypes.get_errno(), "pidfd_getfd")
            os.close(pfd)
            fds[key] = fd
        fd = fds[key]
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                select.select([], [fd], [], 1)
        out.write(b"k")
    except (BrokenPipeError, ConnectionResetError):
        # The platform hung up mid-write: it stopped the host, as it should.
        fds.pop(key, None)
        out.write(b"k")
    except OSError as e:
        sys.stderr.write(str(e) + "\\n")
        out.write(b"e")
    out.flush()
`;

/** The injector process, one request at a time. */
class Injector {
  private readonly proc: ChildProcess;
  private waiting: ((ok: boolean) => void)[] = [];

  constructor() {
    this.proc = spawn("python3", ["-c", INJECTOR], { stdio: ["pipe", "pipe", "inherit"] });
    this.proc.stdout!.on("data", (b: Buffer) => {
      for (const c of b) this.waiting.shift()?.(c === 107);
    });
  }

  write(pid: number, fd: number, data: Buffer): Promise<boolean> {
    const head = Buffer.alloc(12);
    head.writeUInt32LE(pid, 0);
    head.writeUInt32LE(fd, 4);
    head.writeUInt32LE(data.length, 8);
    return new Promise((res) => {
      this.waiting.push(res);
      this.proc.stdin!.write(Buffer.concat([head, data]));
    });
  }

  close(): void {
    this.proc.stdin!.end();
  }
}

/**
 * The pid of the isolate host process of a server, and the fd of its end of the channel:
 * the node process running `host.mjs` (inside the sandbox) that descends from the server
 * process (through its sandbox wrappers).
 */
function findHost(serverPid: number): { pid: number; fd: number } | undefined {
  const cmdline = (pid: string) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return "";
    }
  };
  const parent = new Map<string, string>();
  const pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      parent.set(p, stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]!);
    } catch {}
  }
  const roots = new Set([String(serverPid)]);
  const started = (p: string) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    } catch {
      return 0;
    }
  };
  // The newest first: a host the platform just stopped may not be gone yet.
  for (const p of [...pids].sort((a, b) => started(b) - started(a))) {
    if (!cmdline(p).includes("host.mjs")) continue;
    // A host descends from one of the roots (or is one).
    let q: string | undefined = p;
    while (q && q !== "1" && !roots.has(q)) q = parent.get(q);
    if (!q || !roots.has(q)) continue;
    if (/^\/proc|bwrap|sh\0/.test(cmdline(p).split("\0")[0] ?? "")) continue;
    try {
      if (readlinkSync(`/proc/${p}/fd/3`).startsWith("socket:")) return { pid: Number(p), fd: 3 };
    } catch {}
  }
  return undefined;
}

const HAS_PIDFD = (() => {
  if (spawnSync("python3", ["-c", "print(1)"]).status !== 0) return false;
  const [major = 0, minor = 0] = (readFileSync("/proc/sys/kernel/osrelease", "utf8").match(/\d+/g) ?? []).map(
    Number,
  );
  return major > 5 || (major === 5 && minor >= 6);
})();

const SLOW = `export default {
  async fetch() {
    await new Promise((r) => setTimeout(r, 1000));
    return new Response("slow");
  },
};`;

describe("an isolate host whose channel carries forged frames", {
  skip: HAS_PIDFD ? false : "needs python3 and Linux ≥ 5.6 (pidfd_getfd)",
}, () => {
  let s: TestServer;
  let injector: Injector;
  /** Invocation ids are numbered per host: the host's pid, and the last id it was given. */
  let host: { pid: number; fd: number; lastId: number } | undefined;

  before(async () => {
    s = await startTestServer({ args: ["--queue-wait", "120000"] });
    injector = new Injector();
    await deploySource(s, "neighbour", NEIGHBOUR, {});
    for (const [name, src] of [
      ["neighbour", NEIGHBOUR],
      ["slow", SLOW],
    ] as const) {
      const r = await deployIsolateSource(s, dir, `iso-${name}`, src);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });
  after(async () => {
    injector?.close();
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  /**
   * A healthy call to the isolate neighbour; afterwards, the host that served it and the
   * last invocation id it was given (ids are numbered 1, 2, 3… per host).
   */
  async function healthy(): Promise<void> {
    await assertServing(s, "/fn/iso-neighbour");
    const found = findHost(s.proc.pid!);
    assert.ok(found, "the isolate host was found");
    if (found.pid !== host?.pid) host = { ...found, lastId: 1 };
    else host.lastId++;
    // The slow function loaded, so that forged frames meet its invocation, not its load.
    assert.deepEqual(await attempt(`${s.url}/fn/iso-slow`), { status: 200, text: "slow" });
    host.lastId++;
  }

  /** Starts a slow invocation, writes `bytes` (ids = that invocation's) into the host's channel. */
  async function forge(f: FuzzFrame): Promise<{ status: number; text: string }> {
    await healthy();
    const h = host!;
    const pending = attempt(`${s.url}/fn/iso-slow`);
    h.lastId++;
    await new Promise((r) => setTimeout(r, 150));
    const ok = await injector.write(h.pid, h.fd, withId(f, h.lastId));
    if (process.env.FRAMES_DEBUG)
      process.stderr.write(`injected ${f.bytes.length} bytes into ${h.pid} id ${h.lastId}: ${ok}\n`);
    assert.ok(ok, "the forged bytes were written into the host's channel");
    return pending;
  }

  test("attack: compromised isolate host sends a response head with status 42 → host stopped, 502, tenant recovers", async () => {
    const r = await forge({
      bytes: rawFrame(T.RESP_HEAD, 0, JSON.stringify({ status: 42, headers: [] }), Buffer.alloc(0)),
      idAt: [5],
    });
    assert.equal(r.status, 502, r.text);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    await assertServing(s);
    await healthy();
  });

  test("attack: compromised isolate host sends a GONE with a code of its choosing → host stopped", async () => {
    const r = await forge({
      bytes: rawFrame(34, 1, JSON.stringify({ code: "NIMBUS_UNAUTHORIZED", message: "x" }), Buffer.alloc(0)),
      idAt: [],
    });
    assert.equal(r.status, 502, r.text);
    await healthy();
  });

  test("fuzz: thousands of random and mutated frames through a real isolate host's channel → the server never exits, healthy requests succeed", {
    timeout: 900_000,
  }, async () => {
    const t0 = Date.now();
    let frames = 0;
    const outcomes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(attackBatch(100, 130), async (batch) => {
        frames += batch.length;
        const r = await forge(joinFrames(batch));
        outcomes.set(r.status, (outcomes.get(r.status) ?? 0) + 1);
        await assertServing(s);
      }),
      { numRuns: 12, endOnFailure: true },
    );
    await healthy();
    process.stderr.write(
      `isolate fuzz: ${frames} frames, ${Date.now() - t0} ms, outcomes ${JSON.stringify([...outcomes])}\n`,
    );
    assert.ok(frames >= 12 * 100, `${frames} frames`);
  });
});
