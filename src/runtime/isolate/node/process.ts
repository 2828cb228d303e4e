/**
 * `node:process` (and the `process` global) for functions that opt into Node compatibility:
 * `process.env` holds the function's environment; `nextTick` runs on the microtask queue;
 * the rest answers as a Node 24 process would where that is meaningful inside an isolate
 * (no pid, argv, cwd or stdio of its own), as Workers' `nodejs_compat` does.
 */
import { functionEnv } from "./hook.ts";

type Listener = (...args: unknown[]) => void;
const listeners = new Map<string, Listener[]>();
const start = Date.now();

function nextTick(fn: (...args: unknown[]) => void, ...args: unknown[]): void {
  if (typeof fn !== "function") throw new TypeError('The "callback" argument must be of type function.');
  queueMicrotask(() => fn(...args));
}

function hrtime(prev?: [number, number]): [number, number] {
  const ns = BigInt(Math.round(performance.now() * 1e6));
  const now: [number, number] = [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
  if (!prev) return now;
  let s = now[0] - prev[0];
  let n = now[1] - prev[1];
  if (n < 0) {
    s--;
    n += 1e9;
  }
  return [s, n];
}
hrtime.bigint = (): bigint => BigInt(Math.round(performance.now() * 1e6));

const stream = (level: "log" | "error") => ({
  write(chunk: unknown): boolean {
    const text = typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk as Uint8Array);
    console[level](text.replace(/\n$/, ""));
    return true;
  },
  isTTY: false,
});

/** The process object. */
export const process = {
  env: functionEnv(),
  nextTick,
  version: "v24.0.0",
  versions: { node: "24.0.0" } as Record<string, string>,
  release: { name: "node" },
  platform: "linux",
  arch: "x64",
  title: "nimbus",
  argv: ["node"] as string[],
  execArgv: [] as string[],
  pid: 1,
  ppid: 0,
  browser: false,
  exitCode: undefined as number | undefined,
  cwd: () => "/",
  chdir() {
    throw new Error("process.chdir() is not supported in the isolate executor.");
  },
  umask: () => 0o22,
  uptime: () => (Date.now() - start) / 1000,
  hrtime,
  memoryUsage: () => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }),
  cpuUsage: () => ({ user: 0, system: 0 }),
  emitWarning(warning: unknown) {
    console.warn(typeof warning === "string" ? `Warning: ${warning}` : warning);
  },
  exit(code?: number) {
    throw new Error(
      `process.exit(${code ?? ""}) is not supported in the isolate executor: return a Response.`,
    );
  },
  abort() {
    throw new Error("process.abort() is not supported in the isolate executor.");
  },
  stdout: stream("log"),
  stderr: stream("error"),
  on(event: string, fn: Listener) {
    listeners.set(event, [...(listeners.get(event) ?? []), fn]);
    return process;
  },
  once(event: string, fn: Listener) {
    return process.on(event, fn);
  },
  off(event: string, fn: Listener) {
    listeners.set(
      event,
      (listeners.get(event) ?? []).filter((l) => l !== fn),
    );
    return process;
  },
  removeListener(event: string, fn: Listener) {
    return process.off(event, fn);
  },
  removeAllListeners(event?: string) {
    if (event === undefined) listeners.clear();
    else listeners.delete(event);
    return process;
  },
  emit(event: string, ...args: unknown[]): boolean {
    const list = listeners.get(event) ?? [];
    for (const l of list) l(...args);
    return list.length > 0;
  },
  listeners: (event: string) => [...(listeners.get(event) ?? [])],
  listenerCount: (event: string) => listeners.get(event)?.length ?? 0,
  features: {},
  config: {},
};
