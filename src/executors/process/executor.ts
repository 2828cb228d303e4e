/**
 * The `process` executor: each instance is a Node 24 child process running the runtime shim,
 * inside bubblewrap and cgroups where the host allows. A pool of pre-started generic
 * runtimes (per memory size) makes a cold start pay only for importing the function's bundle.
 */
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { NimbusError } from "../../errors.ts";
import { FrameGuard } from "../../invoker/frame-guard.ts";
import { type QueueSender, SendGate } from "../../queues/producer.ts";
import type { Egress } from "../../runtime/egress-policy.ts";
import {
  type CreditMeta,
  FLOW_WINDOW,
  type Frame,
  FrameWriter,
  type InvokeMeta,
  type LoadedMeta,
  type LoadMeta,
  type LogMeta,
  T,
} from "../../runtime/protocol.ts";
import { serverCeiling } from "../egress/ceiling.ts";
import { EgressProxy } from "../egress/proxy.ts";
import { ResponseFlow } from "../flow.ts";
import type {
  Executor,
  Instance,
  InstanceSpec,
  InstanceState,
  LoadResult,
  ResponseSink,
  StartOptions,
  StartPhases,
} from "../types.ts";
import { launchCommand, linkNode, makeRunDir, makeSlot } from "./launch.ts";
import { Cgroup, INSIDE, type Protections } from "./sandbox.ts";
import { seccompProgram } from "./seccomp.ts";

/** The compiled seccomp filter of process instances (undefined on an architecture without a table). */
const SECCOMP = seccompProgram();

import { type SpawnedChild, SpawnerClient } from "./spawner-client.ts";

const RUNTIME_SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../runtime");

/**
 * Builds the runtime shim into one plain-JS module under `<dataDir>/runtime`: type-stripping
 * its TypeScript in every new runtime process costs ~50 ms of each fresh spawn. `srcDir`
 * builds another copy of `src/runtime` (the startup benchmark's baseline). Returns the
 * directory holding `shim.mjs`.
 */
export function buildRuntime(runDir: string, srcDir = RUNTIME_SRC): string {
  const outDir = join(runDir, "runtime");
  mkdirSync(outDir, { recursive: true, mode: 0o755 });
  buildSync({
    entryPoints: [join(srcDir, "shim.ts")],
    outfile: join(outDir, "shim.mjs"),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node24",
    logLevel: "silent",
  });
  return outDir;
}

/** Options of the process executor. */
export interface ProcessExecutorOptions {
  /** Data directory (the platform's; instances never see it). */
  dataDir: string;
  /**
   * Directory instances may read: the built runtime, code slots, egress sockets.
   * @default a fresh one under the system temp directory, removed on close
   */
  runDir?: string;
  protections: Protections;
  /** The server's egress policy (a function's own can only narrow it). @default public addresses only */
  egressCeiling?: Egress;
  /**
   * Pre-started generic runtimes kept ready per memory size in use.
   * @default 2
   */
  prewarm?: number;
  /** Memory size (MB) whose pool is kept warm from the start. @default 128 */
  defaultMemoryMB?: number;
  /** Private /tmp size per instance, MB. @default 64 */
  tmpMB?: number;
  /** CPU cap per instance, in cores. @default 1 */
  cpus?: number;
  /** Max processes/threads per instance. @default 64 */
  pids?: number;
  /**
   * Freeze an instance's cgroup whenever it has no invocation running and no `waitUntil`
   * work (and pre-started runtimes until taken): nothing it scheduled runs unmetered.
   * Needs `protections.freezer`. @default false
   */
  freeze?: boolean;
  /** Quiet time before an instance is frozen, ms. @default 5 */
  freezeDelayMs?: number;
  /** Receives lines an instance wrote outside any invocation (stdout/stderr, startup). */
  onInstanceLog?: (functionName: string, line: LogMeta) => void;
  /** Stores what a function sends through its producer bindings (`env.JOBS.send`). */
  onQueueSend?: QueueSender;
}

let instanceSeq = 0;

/** The catalogued error of an instance that broke the frame protocol. */
function protocolError(why: string): NimbusError {
  return new NimbusError(
    "NIMBUS_INSTANCE_PROTOCOL",
    `The function's instance sent the platform malformed data (${why}) and was stopped.`,
  );
}

/** V8 heap limit for a memory size: leave room for Node's own ~40 MB outside the heap. */
function heapMB(memoryMB: number): number {
  return Math.max(32, memoryMB - 48);
}

/** An instance's own CPU figure, as a number of ms (anything else counts as 0). */
function reportedCpu(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : 0;
}

/** One child process: generic until LOAD, then an instance of one function version. */
class ProcessInstance implements Instance {
  readonly id: string;
  spec!: InstanceSpec;
  inflight = 0;
  /**
   * Invocations whose `waitUntil` work still runs (the invoker stops the instance when it
   * outlives the function's timeout).
   */
  private readonly backgroundIds = new Set<number>();
  /** Per invocation: the cgroup's CPU ms when it started, and how many invocations overlapped it. */
  private readonly cpuStart = new Map<number, { at: number | undefined; overlap: number }>();
  /** The cgroup's CPU ms when the instance last went quiet (billed to the next invocation). */
  private idleUsage: number | undefined;
  /**
   * The cgroup's CPU ms read by the invocation that just ended, in the same frame's handling
   * (one kernel read then serves both its bill and the quiet spell's start).
   */
  private usageRead: number | undefined;
  private freezeTimer: NodeJS.Timeout | undefined;
  state: InstanceState = "starting";
  lastUsed = Date.now();
  startPhases?: StartPhases;
  readonly memoryMB: number;
  readonly ready: Promise<void>;
  /**
   * Settles when the runtime has warmed up after READY, or when it was taken before that
   * (its warm-up is then skipped): it holds a spawn slot until then.
   */
  readonly warmed: Promise<void>;

  private readonly child: SpawnedChild;
  private socket: Socket | undefined;
  private writer: FrameWriter | undefined;
  /** Everything the runtime sends is checked here first (it is tenant-controlled). */
  private readonly guard = new FrameGuard({
    onFrame: (f) => this.onFrame(f),
    onViolation: (why) => this.kill(protocolError(why)),
  });
  private readonly sinks = new Map<number, ResponseSink>();
  private readonly sends = new SendGate();
  /** Response flow control per running invocation. */
  private readonly flows = new Map<number, ResponseFlow>();
  private readonly cgroup: Cgroup | undefined;
  private readonly slotDir: string;
  private readonly egress: EgressProxy;
  private readonly exitCbs: ((reason: NimbusError | undefined) => void)[] = [];
  private nextId = 1;
  private stderrTail = "";
  private killReason: NimbusError | undefined;
  /** The invocation whose failure caused a kill (its neighbours are told they were collateral). */
  private culprit: ResponseSink | undefined;
  private exited = false;
  private stopping = false;
  private onReady!: () => void;
  private onWarmed!: () => void;
  private onLoaded: ((m: LoadedMeta) => void) | undefined;
  private readonly exec: ProcessExecutor;

  constructor(exec: ProcessExecutor, memoryMB: number) {
    this.exec = exec;
    this.memoryMB = memoryMB;
    this.id = `p${process.pid}-${++instanceSeq}`;
    const o = exec.options;
    const p = o.protections;
    this.slotDir = makeSlot(join(exec.runDir, "slots"), this.id);
    const egressDir = makeSlot(join(exec.runDir, "egress"), this.id);
    this.egress = new EgressProxy({
      dir: egressDir,
      insideDir: p.bwrap ? INSIDE.egress : egressDir,
      ceiling: exec.ceiling,
      log: (msg) => this.onOutput("warn", msg),
      onConnect: (host, port, startMs) => this.egressSpan(host, port, startMs),
    });
    this.egress.listen().catch((err: Error) => {
      this.stderrTail += `\negress proxy failed: ${err.message}`;
    });
    const nodeArgs = [
      `--max-old-space-size=${heapMB(memoryMB)}`,
      "--enable-source-maps",
      "--disable-warning=ExperimentalWarning",
      "--stack-trace-limit=30",
      // Extra runtime flags for profiling the shim (e.g. --cpu-prof with NIMBUS_SANDBOX=off).
      ...(process.env.NIMBUS_RUNTIME_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
    ];
    if (p.cgroups) {
      this.cgroup = new Cgroup(p, this.id, { memoryMB, cpus: o.cpus ?? 1, pids: o.pids ?? 64 });
    }
    const { cmd, args, argsData, seccomp } = launchCommand(
      p,
      {
        nodeDir: exec.nodeDir,
        runtimeDir: exec.runtimeDir,
        codeDir: this.slotDir,
        egressDir,
        tmpMB: o.tmpMB ?? 64,
      },
      [INSIDE.node, ...nodeArgs, `${INSIDE.runtime}/shim.mjs`, `${INSIDE.egress}/ctl.sock`],
      [process.execPath, ...nodeArgs, join(exec.runtimeDir, "shim.mjs"), join(egressDir, "ctl.sock")],
      this.cgroup,
      p.seccomp ? SECCOMP : undefined,
    );
    this.ready = new Promise((res) => {
      this.onReady = res;
    });
    this.warmed = new Promise((res) => {
      this.onWarmed = res;
    });
    this.child = exec.spawner.spawn(cmd, args, argsData, seccomp);
    this.child.on("pipe", (name: string, pipe: Socket) => this.attach(name, pipe));
    this.child.on("exit", (code, signal) => this.onChildExit(code, signal));
    this.child.on("error", (message: string) => {
      this.stderrTail += `\nspawn failed: ${message}`;
      this.onChildExit(null, null);
    });
  }

  /**
   * A span for an egress connection, under the invocation running now. The proxy sees bytes,
   * not requests, so only with one invocation in flight (concurrency 1, the default) can the
   * connection be attributed; with several it is not traced.
   */
  private egressSpan(host: string, port: number, startMs: number): (() => void) | undefined {
    if (this.inflight !== 1) return undefined;
    let sink: ResponseSink | undefined;
    for (const [id, s] of this.sinks) if (!this.backgroundIds.has(id)) sink = s;
    const span = sink?.outbound?.({ host, port, startMs });
    return span && (() => span.end());
  }

  /** The host pid of its sandbox's outermost process (0 until known, or once gone): RSS metric. */
  get pid(): number {
    return this.exited ? 0 : this.child.pid;
  }

  /** Takes one of the runtime's pipes, handed over by the spawner. */
  private attach(name: string, pipe: Socket): void {
    if (this.exited) {
      pipe.destroy();
      return;
    }
    if (name === "fd3") {
      this.socket = pipe;
      this.writer = new FrameWriter(pipe);
      // A runtime that writes garbage (or a function writing to fd 3) is stopped by the guard.
      pipe.on("data", (chunk: Buffer) => this.guard.push(chunk));
      pipe.on("error", () => {});
    } else if (name === "stdout") {
      pipe.setEncoding("utf8").on("data", (s: string) => this.onOutput("info", s));
      pipe.on("error", () => {});
    } else if (name === "stderr") {
      pipe.setEncoding("utf8").on("data", (s: string) => {
        this.stderrTail = (this.stderrTail + s).slice(-8192);
        this.onOutput("error", s);
      });
      pipe.on("error", () => {});
    }
  }

  /** Lines from the instance's output or its egress proxy (refused connections). */
  onOutput(level: LogMeta["level"], text: string): void {
    if (!this.spec) return;
    for (const msg of text.split("\n")) {
      if (!msg) continue;
      const line: LogMeta = { level, t: Date.now(), msg };
      // With one invocation running, raw output belongs to it.
      if (this.sinks.size === 1) this.sinks.values().next().value!.log(line);
      else this.exec.options.onInstanceLog?.(this.spec.functionName, line);
    }
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case T.READY:
        this.onReady();
        // A pre-started runtime waits frozen until a function is loaded into it, once it has
        // warmed up (the shim says READY again with warm: true; see src/runtime/shim.ts).
        if ((f.meta as { warm?: unknown }).warm !== false) {
          this.onWarmed();
          this.maybeFreeze();
        }
        return;
      case T.LOADED:
        this.onLoaded?.(f.meta as LoadedMeta);
        return;
      case T.QUEUE_SEND:
        this.sends.handle(
          f,
          this.spec,
          this.exec.options.onQueueSend,
          (id, meta) => {
            if (!this.exited) this.writer?.send(T.QUEUE_SENT, id, meta);
          },
          (why) => this.kill(protocolError(why)),
        );
        return;
      case T.LOG: {
        const sink = this.sinks.get(f.id);
        if (sink) sink.log(f.meta);
        else if (this.spec) this.exec.options.onInstanceLog?.(this.spec.functionName, f.meta);
        return;
      }
    }
    const sink = this.sinks.get(f.id);
    if (!sink) return;
    switch (f.type) {
      case T.RESP_HEAD:
        sink.head(f.meta.status, f.meta.headers);
        break;
      case T.RESP_CHUNK: {
        const flow = this.flows.get(f.id);
        if (!flow) return;
        if (!flow.received(f.payload.length)) {
          this.kill(
            new NimbusError(
              "NIMBUS_BAD_RESPONSE",
              `The instance sent more than ${FLOW_WINDOW} response bytes the caller had not read yet (flow control); it was stopped.`,
            ),
            sink,
          );
          return;
        }
        sink.chunk(f.payload, flow.consumer(f.payload.length));
        break;
      }
      case T.RESP_END: {
        if (this.backgroundIds.has(f.id)) return; // already ended
        const pending = f.meta?.pending === true;
        const cpu = pending ? reportedCpu(f.meta?.cpuMs) : this.billCpu(f.id, f.meta?.cpuMs);
        this.finish(f.id, pending);
        sink.end(cpu, pending);
        break;
      }
      case T.INVOKE_ERROR: {
        if (this.backgroundIds.has(f.id)) return;
        const cpu = this.billCpu(f.id, f.meta?.cpuMs);
        this.finish(f.id, false);
        sink.fail(new NimbusError(f.meta.code), cpu, f.meta.stack);
        break;
      }
      case T.DONE: {
        // Only for an invocation whose response ended with waitUntil work pending: a DONE
        // before the response's end would stop its billing early.
        if (!this.backgroundIds.has(f.id)) return;
        const cpu = this.billCpu(f.id, f.meta?.cpuMs);
        this.sinks.delete(f.id);
        this.backgroundIds.delete(f.id);
        sink.done(cpu);
        this.maybeFreeze();
        break;
      }
    }
  }

  private finish(id: number, pending: boolean): void {
    this.flows.get(id)?.close();
    this.flows.delete(id);
    this.inflight--;
    this.lastUsed = Date.now();
    if (pending) this.backgroundIds.add(id);
    else this.sinks.delete(id);
    if (this.state === "busy" && this.inflight === 0) this.state = "idle";
    this.maybeFreeze();
  }

  /**
   * The CPU ms to bill an invocation that is over: the kernel's figure for the instance's
   * cgroup over the invocation (the instance cannot lower it), shared out when invocations
   * overlapped (never below the instance's own figure then, capped at the kernel's);
   * the instance's figure only where the host has no CPU accounting.
   */
  private billCpu(id: number, reported: unknown): number {
    const own = reportedCpu(reported);
    const c = this.cpuStart.get(id);
    this.cpuStart.delete(id);
    const now = this.cgroup?.cpuUsageMs();
    // The instance may go quiet right after this: that reading is the one it needs then.
    this.usageRead = now;
    if (!c || c.at === undefined || now === undefined) return own;
    const delta = Math.max(0, now - c.at);
    return c.overlap <= 1 ? delta : Math.max(delta / c.overlap, Math.min(own, delta));
  }

  /** Invocations whose `ctx.waitUntil` work still runs. */
  get background(): number {
    return this.backgroundIds.size;
  }

  /** Nothing of the instance should run: no invocation, no waitUntil work, not loading. */
  private get quiet(): boolean {
    if (this.exited || this.stopping || this.state === "dead" || this.sinks.size > 0) return false;
    return !(this.state === "starting" && this.spec);
  }

  /**
   * Freezes the instance once nothing of it should run, after `freezeDelayMs`: requests
   * that follow each other closely do not pay a freeze and a thaw each. What it runs in
   * that window is billed to its next invocation (see `idleUsage`).
   */
  private maybeFreeze(): void {
    if (this.idleUsage === undefined && this.sinks.size === 0 && this.spec && this.state !== "starting") {
      this.idleUsage = this.usageRead ?? this.cgroup?.cpuUsageMs();
    }
    this.usageRead = undefined;
    if (!this.exec.options.freeze || !this.cgroup?.canFreeze || this.freezeTimer || !this.quiet) return;
    this.freezeTimer = setTimeout(() => {
      this.freezeTimer = undefined;
      if (this.quiet) this.cgroup?.freeze();
    }, this.exec.options.freezeDelayMs ?? 5);
  }

  /** Lets the instance run again before anything is sent to it (a no-op when not frozen). */
  private thaw(): void {
    if (this.freezeTimer) {
      clearTimeout(this.freezeTimer);
      this.freezeTimer = undefined;
    }
    this.cgroup?.thaw();
  }

  /** Loads the function into this (ready, generic) runtime. */
  async load(spec: InstanceSpec): Promise<LoadedMeta> {
    this.spec = spec;
    this.onWarmed();
    this.egress.setFunctionPolicy(spec.network);
    for (const f of ["index.mjs", "index.mjs.map"]) {
      const src = join(spec.codeDir, f);
      if (!existsSync(src)) continue;
      try {
        linkSync(src, join(this.slotDir, f));
      } catch {
        copyFileSync(src, join(this.slotDir, f));
      }
      // The instance's uid is not the platform's; its own code must be readable to it.
      chmodSync(join(this.slotDir, f), 0o644);
    }
    const file = this.exec.options.protections.bwrap
      ? `${INSIDE.code}/index.mjs`
      : join(this.slotDir, "index.mjs");
    const loaded = new Promise<LoadedMeta>((res) => {
      this.onLoaded = res;
    });
    this.cgroup?.setCpus(spec.cpus ?? this.exec.options.cpus ?? 1);
    this.thaw();
    const meta: LoadMeta = {
      file,
      functionName: spec.functionName,
      version: spec.version,
      memoryMB: spec.memoryMB,
      timeoutMs: spec.timeoutMs,
      env: spec.env,
      queues: spec.queues,
    };
    this.writer!.send(T.LOAD, 0, meta);
    const died = new Promise<LoadedMeta>((res) =>
      this.onExit((reason) =>
        res({
          ok: false,
          loadMs: 0,
          error: { message: reason?.message ?? "the instance exited while loading" },
        }),
      ),
    );
    const result = await Promise.race([loaded, died]);
    if (result.ok) {
      this.state = "idle";
      this.maybeFreeze();
    }
    return result;
  }

  invoke(meta: InvokeMeta, body: Buffer, sink: ResponseSink): void {
    if (this.exited) {
      sink.fail(this.killReason ?? new NimbusError("NIMBUS_INSTANCE_CRASHED"));
      return;
    }
    const id = this.nextId++;
    if (this.nextId > 0xfffffff0) this.nextId = 1;
    this.sinks.set(id, sink);
    this.guard.open(id);
    this.thaw();
    const overlap = this.sinks.size;
    for (const c of this.cpuStart.values()) c.overlap = Math.max(c.overlap, overlap);
    // The first invocation after a quiet spell also pays for what the instance ran in it
    // (work left behind before the freeze, or all of it when freezing is off).
    const at = overlap === 1 && this.idleUsage !== undefined ? this.idleUsage : this.cgroup?.cpuUsageMs();
    this.idleUsage = undefined;
    this.cpuStart.set(id, { at, overlap });
    const writer = this.writer!;
    this.flows.set(
      id,
      new ResponseFlow((bytes) => {
        if (!this.exited) writer.send(T.CREDIT, id, { bytes } satisfies CreditMeta);
      }),
    );
    writer.send(T.INVOKE, id, meta, body);
  }

  cancel(sink: ResponseSink): void {
    if (this.exited) return;
    for (const [id, s] of this.sinks) {
      if (s === sink && this.flows.has(id)) this.writer!.send(T.CANCEL, id);
    }
  }

  kill(reason: NimbusError, culprit?: ResponseSink): void {
    if (this.exited) return;
    this.killReason ??= reason;
    this.culprit ??= culprit;
    this.state = "dead";
    // A frozen process does not act on SIGKILL (cgroup v1) until it is thawed.
    this.thaw();
    this.child.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.stopping = true;
    this.state = "dead";
    const gone = new Promise<void>((res) => this.onExit(() => res()));
    this.thaw();
    this.socket?.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 2000);
    // If even the kill is never confirmed (the spawner is gone), count the instance gone.
    const force = setTimeout(() => this.onChildExit(null, "SIGKILL"), 5000);
    await gone;
    clearTimeout(t);
    clearTimeout(force);
  }

  onExit(cb: (reason: NimbusError | undefined) => void): void {
    if (this.exited) cb(this.killReason);
    else this.exitCbs.push(cb);
  }

  private onChildExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    this.state = "dead";
    if (this.freezeTimer) clearTimeout(this.freezeTimer);
    let reason = this.killReason;
    if (!reason && !this.stopping) {
      const oom =
        /heap out of memory|Reached heap limit|Allocation failed/i.test(this.stderrTail) ||
        (this.cgroup?.oomKilled() ?? false);
      if (oom) {
        reason = new NimbusError(
          "NIMBUS_MEMORY_LIMIT",
          `The function exceeded its memory limit of ${this.memoryMB} MB and was stopped. Raise 'memory' in its config.`,
        );
      } else {
        reason = new NimbusError(
          "NIMBUS_INSTANCE_CRASHED",
          `The function's instance exited (${signal ? `signal ${signal}` : `exit code ${code}`}) during the invocation; the next request gets a fresh instance.`,
        );
      }
      this.killReason = reason;
    }
    for (const [id, sink] of this.sinks) {
      // What it used until the end is billed (the kernel's figure outlives the processes).
      const cpu = this.billCpu(id, undefined);
      if (this.culprit && sink !== this.culprit) {
        // Another invocation on this instance caused the kill (e.g. its timeout): this one
        // did nothing wrong, and says so.
        sink.fail(
          new NimbusError(
            "NIMBUS_INSTANCE_CRASHED",
            `The instance was stopped while this invocation ran, because another invocation on it failed (${reason?.code}); retry.`,
          ),
          cpu,
        );
      } else sink.fail(reason ?? new NimbusError("NIMBUS_INSTANCE_CRASHED"), cpu);
    }
    this.sinks.clear();
    for (const flow of this.flows.values()) flow.close();
    this.flows.clear();
    this.inflight = 0;
    this.backgroundIds.clear();
    this.cpuStart.clear();
    this.socket?.destroy();
    if (this.cgroup) {
      this.cgroup.remove();
      if (this.cgroup.dirs.length > 0) this.exec.cgroupsLeft.add(this.cgroup);
    }
    rmSync(this.slotDir, { recursive: true, force: true });
    this.egress.close();
    this.exec.forget(this);
    for (const cb of this.exitCbs.splice(0)) cb(reason);
  }
}

/** The process executor. */
export class ProcessExecutor implements Executor {
  readonly kind = "process" as const;
  readonly options: ProcessExecutorOptions;
  private readonly warm = new Map<number, ProcessInstance[]>();
  private readonly all = new Set<ProcessInstance>();
  private readonly lastWanted = new Map<number, number>();
  /** Cgroups of exited instances the kernel had not released yet (removal is retried). */
  readonly cgroupsLeft = new Set<Cgroup>();
  /**
   * Runtime processes booting now (not yet ready), and starts waiting for a slot: first
   * instances of versions with none (a cold start from zero) ahead of the others.
   */
  private spawning = 0;
  private readonly firstWaiters: (() => void)[] = [];
  private readonly spawnWaiters: (() => void)[] = [];
  /** Runtimes that may boot at once. @default max(2, CPU cores) */
  private readonly spawnCap = Math.max(2, availableParallelism());
  /** Times runtimes were taken, per memory size (for the adaptive pool size). */
  private readonly takes = new Map<number, number[]>();
  private closed = false;
  private readonly pruner: NodeJS.Timeout;

  /** Host directory of the built runtime shim. */
  readonly runtimeDir: string;
  /** Directory instances may read (see {@link ProcessExecutorOptions.runDir}). */
  readonly runDir: string;
  /** The node binary's directory, at a neutral path in the run directory. */
  readonly nodeDir: string;
  private readonly ownRunDir: boolean;
  /** The server's egress ceiling. */
  readonly ceiling: Egress;
  /** Starts runtime processes without forking the gateway. */
  readonly spawner = new SpawnerClient();

  /** Host pids of every runtime process (instances and pre-started ones), for the RSS metric. */
  pids(): number[] {
    const out: number[] = [];
    for (const p of this.all) if (p.pid > 0) out.push(p.pid);
    return out;
  }

  constructor(options: ProcessExecutorOptions) {
    this.options = options;
    this.ownRunDir = options.runDir === undefined;
    this.runDir = options.runDir ?? makeRunDir();
    this.nodeDir = linkNode(this.runDir);
    this.ceiling = options.egressCeiling ?? serverCeiling();
    this.runtimeDir = buildRuntime(this.runDir);
    this.lastWanted.set(options.defaultMemoryMB ?? 128, Number.POSITIVE_INFINITY);
    this.refill(options.defaultMemoryMB ?? 128);
    this.pruner = setInterval(() => this.prune(Date.now()), 60_000);
    this.pruner.unref();
  }

  /**
   * Stops pre-started runtimes of memory sizes no start asked for in the last 10 minutes,
   * and those beyond the pool's target once a wave of cold starts is over.
   */
  prune(now: number, unusedMs = 600_000): void {
    for (const [mb, list] of this.warm) {
      if (now - (this.lastWanted.get(mb) ?? 0) < unusedMs) {
        const extra = list.length - this.target(mb, now);
        if (extra > 0) for (const p of list.splice(0, extra)) void p.stop();
        continue;
      }
      this.warm.delete(mb);
      this.lastWanted.delete(mb);
      for (const p of list) void p.stop();
    }
  }

  /** Pre-started runtimes ready now, per memory size. */
  warmCounts(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [mb, list] of this.warm) out[mb] = list.length;
    return out;
  }

  /**
   * How many pre-started runtimes to keep for a memory size: the configured count, raised
   * to the cold starts of the last 10 s (at most 8), so a wave of cold functions finds
   * runtimes ready instead of paying ~300 ms fresh spawns one after another.
   */
  private target(memoryMB: number, now = Date.now()): number {
    const base = this.options.prewarm ?? 2;
    if (base === 0) return 0;
    const recent = (this.takes.get(memoryMB) ?? []).filter((t) => now - t < 10_000);
    this.takes.set(memoryMB, recent);
    return Math.max(base, Math.min(8, recent.length));
  }

  private refill(memoryMB: number): void {
    if (this.closed) return;
    const target = this.target(memoryMB);
    let list = this.warm.get(memoryMB);
    if (!list) {
      list = [];
      this.warm.set(memoryMB, list);
    }
    // Refills never take a spawn slot a request is waiting for.
    while (list.length < target && this.spawning < this.spawnCap && this.waitingStarts === 0) {
      list.push(this.spawnRuntime(memoryMB));
    }
  }

  /**
   * Starts a runtime process, counted against the machine-wide cap on runtimes booting at
   * once: a hundred cold functions starting together would otherwise share the CPU so
   * thinly that all of them finish late.
   */
  private spawnRuntime(memoryMB: number): ProcessInstance {
    const p = new ProcessInstance(this, memoryMB);
    this.all.add(p);
    this.spawning++;
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      this.spawning--;
      const next = this.firstWaiters.shift() ?? this.spawnWaiters.shift();
      if (next) next();
      else for (const mb of this.warm.keys()) this.refill(mb);
    };
    // A pre-started runtime's warm-up (after READY) still takes CPU: it counts as booting.
    void p.warmed.then(done);
    p.onExit(done);
    return p;
  }

  /** Called by an instance when it exits. */
  forget(p: ProcessInstance): void {
    this.all.delete(p);
    const list = this.warm.get(p.memoryMB);
    const i = list?.indexOf(p) ?? -1;
    if (list && i >= 0) {
      list.splice(i, 1);
      // A pre-started runtime died before use (e.g. spawn failure): do not respawn in a loop.
    }
  }

  /** Starts waiting for a spawn slot. */
  private get waitingStarts(): number {
    return this.firstWaiters.length + this.spawnWaiters.length;
  }

  private async takeRuntime(memoryMB: number, first = false): Promise<ProcessInstance> {
    if (this.closed) throw new NimbusError("NIMBUS_UNAVAILABLE");
    this.lastWanted.set(memoryMB, Date.now());
    const takes = this.takes.get(memoryMB) ?? [];
    takes.push(Date.now());
    this.takes.set(memoryMB, takes);
    const list = this.warm.get(memoryMB);
    const p = list?.shift();
    // Refill only after this cold start is served: spawning (fork + a Node start-up) would
    // compete with it for the event loop and the CPU.
    setTimeout(() => this.refill(memoryMB), 50);
    if (p) {
      await p.ready;
      return p;
    }
    if (this.spawning >= this.spawnCap)
      await new Promise<void>((r) => (first ? this.firstWaiters : this.spawnWaiters).push(r));
    if (this.closed) throw new NimbusError("NIMBUS_UNAVAILABLE");
    const fresh = this.spawnRuntime(memoryMB);
    const died = new Promise<never>((_, rej) =>
      fresh.onExit((reason) =>
        rej(reason ?? new NimbusError("NIMBUS_UNAVAILABLE", "The runtime failed to start.")),
      ),
    );
    await Promise.race([fresh.ready, died]);
    return fresh;
  }

  async start(spec: InstanceSpec, options?: StartOptions): Promise<Instance> {
    const t0 = performance.now();
    const p = await this.takeRuntime(spec.memoryMB, options?.first);
    const t1 = performance.now();
    const result = await p.load(spec);
    p.startPhases = { sandboxMs: t1 - t0, loadMs: performance.now() - t1 };
    if (!result.ok) {
      p.kill(new NimbusError("NIMBUS_FUNCTION_ERROR"));
      throw new NimbusError(
        "NIMBUS_FUNCTION_ERROR",
        `The function failed to load: ${result.error?.message}`,
        {
          details: { stack: result.error?.stack },
        },
      );
    }
    return p;
  }

  async check(spec: InstanceSpec): Promise<LoadResult> {
    const p = await this.takeRuntime(spec.memoryMB);
    try {
      return await p.load(spec);
    } finally {
      await p.stop();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.firstWaiters.splice(0), ...this.spawnWaiters.splice(0)]) w();
    clearInterval(this.pruner);
    await Promise.all([...this.all].map((p) => p.stop()));
    this.warm.clear();
    this.spawner.close();
    // Wait (at most ~1 s) for the cgroups to go, so a platform exiting right after leaves none.
    for (let i = 0; i < 50 && [...this.cgroupsLeft].some((c) => c.dirs.length > 0); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    this.cgroupsLeft.clear();
    if (this.ownRunDir) rmSync(this.runDir, { recursive: true, force: true });
  }
}
