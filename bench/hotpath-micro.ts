/**
 * `node bench/hotpath-micro.ts [<checkout> ...]`: CPU µs per request of the frame hop's
 * bookkeeping, measured in one process (process.cpuUsage, so it holds up on a loaded machine
 * better than a throughput ratio), for each checkout given (default: this one), interleaved.
 *
 * Per request, as the hello function's response crosses it: the instance side encodes
 * RESP_HEAD, RESP_CHUNK and RESP_END (FrameWriter, 10 requests per turn, one write), the
 * gateway side decodes and checks them (FrameGuard, after `open(id)`), plus the Web Request
 * a fetch handler receives (the shim's `lazyRequest` where the checkout has it, else undici's
 * `new Request`). No sockets: the write is captured.
 */
import { join, resolve } from "node:path";

const roots = process.argv.slice(2).length ? process.argv.slice(2) : [resolve(import.meta.dirname, "..")];
const N = 50_000;
const ROUNDS = 5;

interface Mods {
  root: string;
  /** The checkout's modules, typed as this checkout's (same exports). */
  protocol: typeof import("../src/runtime/protocol.ts");
  guard: typeof import("../src/invoker/frame-guard.ts");
  makeRequest: (url: string, method: string, headers: [string, string][]) => Request;
}

async function load(root: string): Promise<Mods> {
  const protocol = await import(join(root, "src/runtime/protocol.ts"));
  const guard = await import(join(root, "src/invoker/frame-guard.ts"));
  let makeRequest = (url: string, method: string, headers: [string, string][]) =>
    new Request(url, { method, headers });
  try {
    const lazy = await import(join(root, "src/runtime/lazy-request.ts"));
    makeRequest = (url, method, headers) => lazy.lazyRequest(url, method, headers, undefined);
  } catch {
    // A checkout without lazy requests builds undici's.
  }
  return { root, protocol, guard, makeRequest };
}

const HEADERS: [string, string][] = [
  ["host", "127.0.0.1:7070"],
  ["connection", "keep-alive"],
  ["user-agent", "autocannon"],
];
const BODY = Buffer.from("Hello, world!\n");

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** µs per request: frames out (instance), frames in (gateway), Request made (instance). */
function measure(m: Mods): { frames: number; request: number } {
  const { T, FrameWriter } = m.protocol;
  let written: Buffer[] = [];
  const socket = { destroyed: false, write: (b: Buffer) => written.push(b) };
  const writer = new FrameWriter(socket as unknown as import("node:net").Socket);
  let seen = 0;
  const guard = new m.guard.FrameGuard({
    onFrame: () => seen++,
    onViolation: (w: string) => {
      throw new Error(w);
    },
  });
  const t0 = cpuUs();
  for (let i = 0; i < N; i += 10) {
    for (let k = 0; k < 10; k++) {
      const id = i + k + 1;
      writer.send(T.RESP_HEAD, id, { status: 200, headers: [["content-type", "text/plain"]] });
      writer.send(T.RESP_CHUNK, id, undefined, BODY);
      writer.send(T.RESP_END, id, { cpuMs: 0.05, pending: false });
      guard.open(id);
    }
    writer.flush();
    for (const b of written) guard.push(b);
    written = [];
  }
  const t1 = cpuUs();
  for (let i = 0; i < N; i++) {
    const r = m.makeRequest("http://127.0.0.1:7070/", "GET", HEADERS);
    if (r.method !== "GET") throw new Error("bad request");
  }
  const t2 = cpuUs();
  if (seen !== 3 * N) throw new Error(`decoded ${seen} frames, expected ${3 * N}`);
  return { frames: (t1 - t0) / N, request: (t2 - t1) / N };
}

const mods = [];
for (const r of roots) mods.push(await load(r));
for (const m of mods) measure(m); // warm-up
const results = new Map<string, { frames: number[]; request: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const m of mods) {
    const r = measure(m);
    const e = results.get(m.root) ?? { frames: [], request: [] };
    e.frames.push(r.frames);
    e.request.push(r.request);
    results.set(m.root, e);
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
console.log(`| checkout | frames out + in, µs/request | Web Request, µs/request |`);
console.log(`| --- | ---: | ---: |`);
for (const [root, e] of results) {
  console.log(
    `| ${root} | ${median(e.frames).toFixed(2)} (${Math.min(...e.frames).toFixed(2)}–${Math.max(...e.frames).toFixed(2)}) | ${median(e.request).toFixed(2)} (${Math.min(...e.request).toFixed(2)}–${Math.max(...e.request).toFixed(2)}) |`,
  );
}
