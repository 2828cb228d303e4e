/**
 * The `isolate` executor: each instance is a V8 isolate (isolated-vm) with a Web-standard
 * runtime inside. Isolates live in an *isolate host* — one sandboxed Node process per
 * tenant (bubblewrap + cgroups, like a process instance), because isolates sharing a
 * process are no boundary between tenants. The platform talks to each host with the shared
 * frame protocol, every frame of one event-loop turn in one write.
 *
 * A cold start is: take a blank isolate the host pre-created from its runtime snapshot,
 * compile and evaluate the function's module in it. No process is spawned.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { availableParallelism, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { type ErrorCode, NimbusError } from "../../errors.ts";
import { FrameGuard, ISOLATE_HOST_RULES } from "../../invoker/frame-guard.ts";
import { type QueueSender, SendGate } from "../../queues/producer.ts";
import type { Egress } from "../../runtime/egress-policy.ts";
import {
  type EgressPolicy,
  type FetchSpanMeta,
  type GoneMeta,
  type InitMeta,
  type IsolateLoadMeta,
  type Isolation,
  TI,
  type UnloadMeta,
} from "../../runtime/isolate/frames.ts";
import {
  type CreditMeta,
  FLOW_WINDOW,
  type Frame,
  FrameWriter,
  type InvokeMeta,
  type LoadedMeta,
  type LogMeta,
  MAX_FRAME,
  T,
} from "../../runtime/protocol.ts";
import { serverCeiling } from "../egress/ceiling.ts";
import { EgressProxy } from "../egress/proxy.ts";
import { ResponseFlow } from "../flow.ts";
import { ARGS_FD, launchCommand, linkNode, linkTree, makeRunDir, makeSlot } from "../process/launch.ts";
import { Cgroup, INSIDE, type Protections } from "../process/sandbox.ts";
import type {
  Executor,
  Instance,
  InstanceSpec,
  InstanceState,
  LoadResult,
  ResponseSink,
  StartPhases,
} from "../types.ts";
import { hostSource, preludeSource } from "./prelude.ts";

export type { EgressPolicy, Isolation } from "../../runtime/isolate/frames.ts";

const require = createRequire(import.meta.url);
const IVM_DIR = dirname(require.resolve("isolated-vm/package.json"));
const IVM_NATIVE: string = require("node-gyp-build").path(IVM_DIR);
const UNDICI_MAIN = require.resolve("undici");
const UNDICI_DIR = dirname(require.resolve("undici/package.json"));
const INSIDE_IVM = "/nimbus/ivm";
/** Largest bundle + source map sent in one LOAD frame (frames are capped at 16 MB). */
const MAX_BUNDLE = MAX_FRAME - 256 * 1024;
/** Budgeted memory of one warm isolate, MB (measured ~2 MB idle; headroom for a working heap). */
const ISOLATE_COST_MB = 4;
/** Budgeted memory of one context in a shared isolate, MB (measured ~0.3 MB idle; headroom). */
const CONTEXT_COST_MB = 1;
/** Bundles kept in memory for cold starts, bytes. */
const CODE_CACHE_BYTES = 64 * 1024 * 1024;
const INSIDE_UNDICI = "/nimbus/undici";

/** Options of the isolate executor. */
export interface IsolateExecutorOptions {
  /** Data directory (the platform's; hosts never see it). */
  dataDir: string;
  /**
   * Directory hosts may read (their program, their egress sockets).
   * @default a fresh one under the system temp directory, removed on close
   */
  runDir?: string;
  protections: Protections;
  /** The server's egress policy (the ceiling of every fetch). @default public addresses only */
  egressCeiling?: Egress;
  /**
   * Egress rules for `fetch` from isolates.
   * @default { default: "allow", allowPrivate: false } (public internet only)
   */
  egress?: EgressPolicy;
  /** Blank isolates each host keeps ready per memory size. @default 2 */
  spares?: number;
  /**
   * How a function is isolated from its tenant's other functions when its config does not
   * say (`isolation`): `"isolate"`, a V8 isolate each; `"context"`, a context each in an
   * isolate shared by up to {@link contextsPerIsolate} functions of the same tenant and memory
   * size (about a seventh of the memory; they share that isolate's heap limit and thread, and
   * a limit breach by one stops them all, each told why). Tenants never share an isolate.
   * @default "isolate"
   */
  isolation?: Isolation;
  /** Functions one shared isolate holds at most (isolation "context"). @default 32 */
  contextsPerIsolate?: number;
  /**
   * A function's own isolation (config `isolation`), when it has one.
   * @example (spec) => spec.isolation
   */
  isolationFor?: (spec: InstanceSpec) => Isolation | undefined;
  /**
   * cgroup memory limit of one tenant's host (all its isolates together), MB. Each isolate
   * is also held to its function's `memory` by V8.
   * @default three quarters of the machine's memory (at least 2048)
   */
  hostMemoryMB?: number;
  /** CPU cap of one host, in cores. @default all cores */
  hostCpus?: number;
  /** Max threads of one host. @default 512 */
  hostPids?: number;
  /** Tenants whose host is started right away (so the first cold start does not spawn it). @default ["default"] */
  warmTenants?: string[];
  /**
   * The CPU-time limit (`cpuMs` config) of an instance, when the spec does not carry it.
   * @example (spec) => registry.getVersion(spec.tenant, spec.functionName, spec.version)?.config.cpuMs
   */
  cpuMsFor?: (spec: InstanceSpec) => number | undefined;
  /**
   * A function's own network policy, when it has one (else `egress` applies).
   * @example (spec) => registry.getVersion(spec.tenant, spec.functionName, spec.version)?.config.network
   */
  egressFor?: (spec: InstanceSpec) => EgressPolicy | undefined;
  /**
   * Freeze a tenant's host process (cgroup freezer) once none of its isolates has had work
   * for {@link hostFreezeDelayMs}; it is thawed before anything is sent to it. Needs
   * `protections.freezer`. @default false
   */
  freeze?: boolean;
  /**
   * Quiet time before an idle host is frozen, ms: lets the host top up its spare isolates
   * (a cold start would otherwise create one on its path). CPU an isolate uses in it is
   * billed to that isolate's next invocation, and its timers wait for that invocation.
   * @default 200
   */
  hostFreezeDelayMs?: number;
  /** Receives lines an isolate wrote outside any invocation. */
  onInstanceLog?: (functionName: string, line: LogMeta) => void;
  /** Stores what a function sends through its producer bindings (`env.JOBS.send`). */
  onQueueSend?: QueueSender;
}

let hostSeq = 0;
let slotSeq = 0;

/** One V8 isolate holding one function version. */
class IsolateInstance implements Instance {
  readonly id: string;
  readonly spec: InstanceSpec;
  readonly slot: number;
  inflight = 0;
  background = 0;
  state: InstanceState = "starting";
  lastUsed = Date.now();
  startPhases?: StartPhases;
  /** Invocation frame ids running (or in background) on this isolate. */
  readonly invocations = new Set<number>();
  /** Its producer-binding sends waiting for the queue. */
  readonly sends = new SendGate();
  private readonly exitCbs: ((reason: NimbusError | undefined) => void)[] = [];
  private exited = false;
  private reason: NimbusError | undefined;
  private readonly host: IsolateHost;

  constructor(host: IsolateHost, spec: InstanceSpec) {
    this.host = host;
    this.spec = spec;
    this.slot = ++slotSeq;
    this.id = `i${host.pid}-${this.slot}`;
  }

  invoke(meta: InvokeMeta, body: Buffer, sink: ResponseSink): void {
    if (this.exited) {
      sink.fail(this.reason ?? new NimbusError("NIMBUS_INSTANCE_CRASHED"));
      return;
    }
    this.host.invoke(this, meta, body, sink);
  }

  cancel(sink: ResponseSink): void {
    if (!this.exited) this.host.cancel(sink);
  }

  /** An invocation's response ended (or failed). */
  finished(pending: boolean): void {
    this.inflight = Math.max(0, this.inflight - 1);
    this.lastUsed = Date.now();
    if (pending) this.background++;
    if (this.state === "busy" && this.inflight === 0) this.state = "idle";
  }

  kill(reason: NimbusError): void {
    if (this.exited) return;
    this.host.unload(this, true);
    this.die(reason);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.host.unload(this);
    this.die(undefined);
  }

  onExit(cb: (reason: NimbusError | undefined) => void): void {
    if (this.exited) cb(this.reason);
    else this.exitCbs.push(cb);
  }

  /** The isolate is gone: fail what still runs on it and tell the pool. */
  die(reason: NimbusError | undefined): void {
    if (this.exited) return;
    this.exited = true;
    this.reason = reason;
    this.state = "dead";
    this.host.forget(this, reason ?? new NimbusError("NIMBUS_INSTANCE_CRASHED"));
    this.inflight = 0;
    this.background = 0;
    for (const cb of this.exitCbs.splice(0)) cb(reason);
  }
}

/** One tenant's sandboxed isolate host process. */
class IsolateHost {
  readonly tenant: string;
  readonly ready: Promise<void>;
  pid = 0;
  private readonly child: ChildProcess;
  private readonly socket: Socket;
  private readonly writer: FrameWriter;
  /** Everything the host sends is checked here first (a tenant that escaped an isolate owns it). */
  private readonly guard: FrameGuard;
  /** Why the platform killed the host, when it did. */
  private killReason: NimbusError | undefined;
  /** Why the host exited, once it has. */
  private exitReason: NimbusError | undefined;
  private readonly cgroup: Cgroup | undefined;
  private readonly dir: string;
  private readonly egressProxy: EgressProxy;
  private readonly instances = new Map<number, IsolateInstance>();
  private readonly loads = new Map<number, (m: LoadedMeta) => void>();
  private readonly sinks = new Map<
    number,
    { sink: ResponseSink; instance: IsolateInstance; flow: ResponseFlow }
  >();
  private nextId = 1;
  private stderrTail = "";
  private exited = false;
  private readonly exitCbs: (() => void)[] = [];
  private readonly exec: IsolateExecutor;
  private freezeTimer: NodeJS.Timeout | undefined;
  /** No freeze before this time (Date.now()): the host is checking a killed isolate. */
  private awakeUntil = 0;
  /** Since when (Date.now()) the host has had no work; undefined while it has some. */
  private idleSince: number | undefined;
  private isReady = false;
  private stopping = false;

  constructor(exec: IsolateExecutor, tenant: string) {
    this.exec = exec;
    this.tenant = tenant;
    const o = exec.options;
    const p = o.protections;
    const name = `iso-${tenant}-${process.pid}-${++hostSeq}`;
    this.dir = makeSlot(join(exec.runDir, "isolate-hosts"), name);
    // The host program, bundled to plain JS, sits in the host's own (read-only) directory.
    writeFileSync(join(this.dir, "host.mjs"), hostSource(), { mode: 0o644 });
    const egressDir = makeSlot(join(exec.runDir, "egress"), name);
    this.egressProxy = new EgressProxy({
      dir: egressDir,
      insideDir: p.bwrap ? INSIDE.egress : egressDir,
      ceiling: exec.ceiling,
      log: (msg) => this.onOutput("warn", msg),
    });
    this.egressProxy.listen().catch((err: Error) => {
      this.stderrTail += `\negress proxy failed: ${err.message}`;
    });
    const nodeArgs = [
      "--no-node-snapshot",
      "--disable-warning=ExperimentalWarning",
      "--stack-trace-limit=30",
      // Extra host flags for profiling (bench/profile.ts: --cpu-prof with the sandbox off).
      ...(process.env.NIMBUS_ISOLATE_HOST_FLAGS?.split(/\s+/).filter(Boolean) ?? []),
    ];
    if (p.cgroups) {
      this.cgroup = new Cgroup(p, name, {
        memoryMB: o.hostMemoryMB ?? Math.max(2048, Math.floor((totalmem() / 1048576) * 0.75)),
        cpus: o.hostCpus ?? availableParallelism(),
        pids: o.hostPids ?? 512,
      });
    }
    const { cmd, args, argsData } = launchCommand(
      p,
      {
        nodeDir: exec.nodeDir,
        runtimeDir: exec.libs.runtime,
        codeDir: this.dir,
        egressDir,
        tmpMB: 16,
        // The native addon and undici, read-only, beside the runtime.
        extra: [
          [exec.libs.ivm, INSIDE_IVM],
          [exec.libs.undici, INSIDE_UNDICI],
        ],
      },
      [
        INSIDE.node,
        ...nodeArgs,
        `${INSIDE.code}/host.mjs`,
        `${INSIDE_IVM}/${relative(IVM_DIR, IVM_NATIVE)}`,
        `${INSIDE_UNDICI}/${relative(UNDICI_DIR, UNDICI_MAIN)}`,
        `${INSIDE.egress}/ctl.sock`,
      ],
      [
        process.execPath,
        ...nodeArgs,
        join(this.dir, "host.mjs"),
        join(exec.libs.ivm, relative(IVM_DIR, IVM_NATIVE)),
        join(exec.libs.undici, relative(UNDICI_DIR, UNDICI_MAIN)),
        join(egressDir, "ctl.sock"),
      ],
      this.cgroup,
    );
    const stdio: ("ignore" | "pipe")[] = ["ignore", "pipe", "pipe", "pipe"];
    if (argsData !== undefined) stdio.push("pipe");
    this.child = spawn(cmd, args, { stdio, env: {} });
    if (argsData !== undefined) {
      const w = this.child.stdio[ARGS_FD] as Socket;
      w.on("error", () => {});
      w.end(argsData);
    }
    this.pid = this.child.pid ?? 0;
    this.socket = this.child.stdio[3] as Socket;
    this.writer = new FrameWriter(this.socket);
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      onReady = res;
      onFail = rej;
    });
    this.ready.catch(() => {});
    this.exitCbs.push(() =>
      onFail(
        new NimbusError(
          "NIMBUS_UNAVAILABLE",
          `The isolate host for tenant '${tenant}' failed to start: ${this.stderrTail.trim().slice(-500)}`,
        ),
      ),
    );
    this.guard = new FrameGuard({
      rules: ISOLATE_HOST_RULES,
      onFrame: (f) => {
        if (f.type === T.READY) {
          this.isReady = true;
          onReady();
          this.idleCheck();
        } else this.onFrame(f);
      },
      onViolation: (why) => this.violated(why),
    });
    this.socket.on("data", (chunk: Buffer) => this.guard.push(chunk));
    this.socket.on("error", () => {});
    this.child.stdout!.setEncoding("utf8").on("data", (s: string) => this.onOutput("info", s));
    this.child.stderr!.setEncoding("utf8").on("data", (s: string) => {
      this.stderrTail = (this.stderrTail + s).slice(-8192);
      this.onOutput("error", s);
    });
    this.child.on("exit", (code, signal) => this.onChildExit(code, signal));
    this.child.on("error", (err) => {
      this.stderrTail += `\nspawn failed: ${err.message}`;
      this.onChildExit(null, null);
    });
    void preludeSource().then(
      (src) => {
        const init: InitMeta = {
          // The server's policy is enforced by the egress proxy (the ceiling); in the host only a
          // function's own, narrower policy is checked early, for a clear error.
          egress: o.egress ?? { default: "allow", allowPrivate: true },
          spares: o.spares ?? 2,
          isolation: o.isolation ?? "isolate",
          contextsPerIsolate: o.contextsPerIsolate ?? 32,
        };
        this.writer.send(TI.INIT, 0, init, Buffer.from(src));
      },
      (err: Error) => {
        this.stderrTail += `\nbuilding the isolate runtime failed: ${err.message}`;
        this.child.kill("SIGKILL");
      },
    );
  }

  get alive(): boolean {
    return !this.exited;
  }

  /**
   * Schedules a freeze when none of the host's isolates has work (a load, an invocation,
   * waitUntil). One timer serves every request: work in the meantime only moves the idle
   * mark, and the timer, when it fires, waits out what is left (no timer set and cleared per
   * request at one connection).
   */
  private idleCheck(): void {
    if (!this.exec.options.freeze || !this.cgroup?.canFreeze || this.exited || this.stopping) return;
    if (!this.isReady) return;
    if (this.sinks.size > 0 || this.loads.size > 0) return;
    this.idleSince = Date.now();
    if (!this.freezeTimer) this.armFreeze(this.freezeDelay());
  }

  private freezeDelay(): number {
    return Math.max(this.exec.options.hostFreezeDelayMs ?? 200, this.awakeUntil - Date.now());
  }

  private armFreeze(ms: number): void {
    this.freezeTimer = setTimeout(() => {
      this.freezeTimer = undefined;
      if (this.exited || this.stopping || this.idleSince === undefined) return;
      if (this.sinks.size > 0 || this.loads.size > 0) return;
      const left = this.idleSince + this.freezeDelay() - Date.now();
      if (left > 0) this.armFreeze(left);
      else this.cgroup?.freeze();
    }, ms);
    this.freezeTimer.unref();
  }

  /** Lets the host run before anything is sent to it (a no-op when it is not frozen). */
  private thaw(): void {
    this.idleSince = undefined;
    this.cgroup?.thaw();
  }

  get size(): number {
    return this.instances.size;
  }

  private onOutput(level: LogMeta["level"], text: string): void {
    // The host itself prints nothing on purpose; whatever it prints is a platform message.
    for (const msg of text.split("\n")) {
      if (msg)
        this.exec.options.onInstanceLog?.(`(isolate host ${this.tenant})`, { level, t: Date.now(), msg });
    }
  }

  /** The host speaks for every isolate of the tenant: a violation stops it as a whole. */
  private violated(why: string): void {
    this.killReason ??= new NimbusError(
      "NIMBUS_INSTANCE_PROTOCOL",
      `The isolate host of tenant '${this.tenant}' sent the platform malformed data (${why}) and was stopped.`,
    );
    this.child.kill("SIGKILL");
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case T.QUEUE_SEND: {
        // id: the sending isolate's slot.
        const inst = this.instances.get(f.id);
        if (!inst) {
          this.violated("a queue send for an isolate that is not loaded");
          return;
        }
        inst.sends.handle(
          f,
          inst.spec,
          this.exec.options.onQueueSend,
          (id, meta) => {
            if (!this.exited) this.writer.send(T.QUEUE_SENT, id, meta);
          },
          (why) => this.violated(why),
        );
        return;
      }
      case T.LOADED: {
        const cb = this.loads.get(f.id);
        this.loads.delete(f.id);
        cb?.(f.meta as LoadedMeta);
        this.idleCheck();
        return;
      }
      case TI.GONE: {
        const inst = this.instances.get(f.id);
        const m = f.meta as GoneMeta;
        // In the function's log too: an idle instance stopped with a shared isolate has no
        // invocation to carry the reason, and must not vanish silently.
        if (inst)
          this.exec.options.onInstanceLog?.(inst.spec.functionName, {
            level: "error",
            t: Date.now(),
            msg: m.message,
          });
        inst?.die(new NimbusError(m.code as ErrorCode, m.message));
        return;
      }
      case TI.SPAN: {
        // A fetch of a running invocation ended: its client span, with the times the host measured.
        const m = f.meta as FetchSpanMeta;
        const span = this.sinks.get(f.id)?.sink.outbound?.(m);
        if (span) {
          if (m.status > 0) span.set("http.response.status_code", m.status);
          span.set("nimbus.traceparent_propagated", m.propagated);
          if (m.error !== undefined) span.error(m.error);
          else if (m.status >= 500) span.error(`HTTP ${m.status}`);
          span.end(Math.min(m.endMs, Date.now()));
        }
        return;
      }
      case T.LOG: {
        const s = this.sinks.get(f.id);
        if (s) s.sink.log(f.meta as LogMeta);
        else {
          const { slot, ...line } = f.meta as LogMeta & { slot?: number };
          const inst = slot === undefined ? undefined : this.instances.get(slot);
          if (inst) this.exec.options.onInstanceLog?.(inst.spec.functionName, line);
        }
        return;
      }
    }
    const s = this.sinks.get(f.id);
    if (!s) return;
    const { sink, instance, flow } = s;
    switch (f.type) {
      case T.RESP_HEAD:
        sink.head(f.meta.status, f.meta.headers);
        break;
      case T.RESP_CHUNK:
        if (!flow.received(f.payload.length)) {
          // The host enforces the window on its isolates; a host that does not is broken.
          instance.kill(
            new NimbusError(
              "NIMBUS_BAD_RESPONSE",
              `The isolate sent more than ${FLOW_WINDOW} response bytes the caller had not read yet (flow control); it was stopped.`,
            ),
          );
          return;
        }
        sink.chunk(f.payload, flow.consumer(f.payload.length));
        break;
      case T.RESP_END:
        if (!f.meta.pending) this.endInvocation(f.id, instance);
        instance.finished(f.meta.pending);
        sink.end(f.meta.cpuMs, f.meta.pending);
        break;
      case T.INVOKE_ERROR:
        this.endInvocation(f.id, instance);
        instance.finished(false);
        sink.fail(new NimbusError(f.meta.code), f.meta.cpuMs, f.meta.stack);
        break;
      case T.DONE:
        this.endInvocation(f.id, instance);
        instance.background = Math.max(0, instance.background - 1);
        sink.done(f.meta.cpuMs);
        break;
    }
  }

  private endInvocation(id: number, instance: IsolateInstance): void {
    this.sinks.get(id)?.flow.close();
    this.sinks.delete(id);
    this.guard.close(id);
    instance.invocations.delete(id);
    this.idleCheck();
  }

  /** Loads a function into a new isolate of this host. */
  async load(
    spec: InstanceSpec,
    code: { payload: Buffer; mapBytes: number },
    cpuMs: number | undefined,
    isolation: Isolation,
  ): Promise<{ instance: IsolateInstance; loaded: LoadedMeta }> {
    await this.ready;
    const instance = new IsolateInstance(this, spec);
    this.instances.set(instance.slot, instance);
    const meta: IsolateLoadMeta = {
      functionName: spec.functionName,
      version: spec.version,
      memoryMB: spec.memoryMB,
      timeoutMs: spec.timeoutMs,
      env: spec.env,
      queues: spec.queues,
    };
    if (cpuMs !== undefined) meta.cpuMs = cpuMs;
    if (code.mapBytes > 0) meta.mapBytes = code.mapBytes;
    const egress = this.exec.options.egressFor?.(spec);
    if (egress) meta.egress = egress;
    if (isolation === "context") meta.isolation = isolation;
    const loaded = await new Promise<LoadedMeta>((res) => {
      if (this.exited) {
        res({ ok: false, loadMs: 0, error: { message: "The isolate host exited." } });
        return;
      }
      this.loads.set(instance.slot, res);
      this.thaw();
      this.writer.send(T.LOAD, instance.slot, meta, code.payload);
    });
    // The host died under the load (e.g. stopped for a protocol violation): that is no
    // failure of the function's code, and says so.
    if (!loaded.ok && this.exitReason) throw this.exitReason;
    if (loaded.ok) instance.state = "idle";
    else this.instances.delete(instance.slot);
    return { instance, loaded };
  }

  invoke(instance: IsolateInstance, meta: InvokeMeta, body: Buffer, sink: ResponseSink): void {
    const id = this.nextId++;
    if (this.nextId > 0xfffffff0) this.nextId = 1;
    const flow = new ResponseFlow((bytes) => {
      if (!this.exited) this.writer.send(T.CREDIT, id, { bytes } satisfies CreditMeta);
    });
    this.sinks.set(id, { sink, instance, flow });
    this.guard.open(id);
    instance.invocations.add(id);
    this.thaw();
    this.writer.send(T.INVOKE, id, { ...meta, slot: instance.slot }, body);
  }

  /** Tells the host that the caller of an invocation went away. */
  cancel(sink: ResponseSink): void {
    if (this.exited) return;
    for (const [id, s] of this.sinks) if (s.sink === sink) this.writer.send(T.CANCEL, id);
  }

  /** Asks the host to dispose an instance's isolate (`kill`: it may still be running code). */
  unload(instance: IsolateInstance, kill = false): void {
    if (this.exited) return;
    this.thaw();
    // A killed function may hold a shared isolate's thread: the host checks that (within
    // 500 ms, PROBE_MS in host.ts) and must not be frozen before it can.
    if (kill) this.awakeUntil = Date.now() + 1000;
    this.writer.send(TI.UNLOAD, instance.slot, (kill ? { kill } : {}) satisfies UnloadMeta);
    this.idleCheck();
  }

  /** Drops an instance that died; fails its invocations with `reason`. */
  forget(instance: IsolateInstance, reason: NimbusError): void {
    this.instances.delete(instance.slot);
    for (const id of instance.invocations) {
      const s = this.sinks.get(id);
      this.sinks.delete(id);
      this.guard.close(id);
      s?.flow.close();
      s?.sink.fail(reason);
    }
    instance.invocations.clear();
    this.idleCheck();
  }

  onExit(cb: () => void): void {
    if (this.exited) cb();
    else this.exitCbs.push(cb);
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise<void>((res) => this.onExit(res));
      this.stopping = true;
      this.thaw();
      this.socket.end();
      const t = setTimeout(() => this.child.kill("SIGKILL"), 2000);
      await gone;
      clearTimeout(t);
    }
    // The cgroup goes once the kernel has reaped the sandbox's processes (retried by Cgroup);
    // wait for it, so that a platform stopping right after this leaves no cgroup behind.
    for (let i = 0; i < 40 && (this.cgroup?.dirs.length ?? 0) > 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  private onChildExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exited) return;
    this.exited = true;
    if (this.freezeTimer) clearTimeout(this.freezeTimer);
    const oom = this.cgroup?.oomKilled() ?? false;
    const reason =
      this.killReason ??
      (oom
        ? new NimbusError(
            "NIMBUS_MEMORY_LIMIT",
            `The isolate host of tenant '${this.tenant}' reached its memory limit and was stopped; its functions restart on the next request.`,
          )
        : new NimbusError(
            "NIMBUS_INSTANCE_CRASHED",
            `The isolate host of tenant '${this.tenant}' exited (${signal ? `signal ${signal}` : `exit code ${code}`}); its functions restart on the next request.`,
          ));
    this.exitReason = reason;
    for (const cb of this.loads.values()) cb({ ok: false, loadMs: 0, error: { message: reason.message } });
    this.loads.clear();
    for (const inst of [...this.instances.values()]) inst.die(reason);
    this.socket.destroy();
    this.cgroup?.remove();
    this.egressProxy.close();
    rmSync(this.dir, { recursive: true, force: true });
    this.exec.hostExited(this);
    for (const cb of this.exitCbs.splice(0)) cb();
  }
}

/** The isolate executor. */
export class IsolateExecutor implements Executor {
  readonly kind = "isolate" as const;
  readonly options: IsolateExecutorOptions;
  private readonly hosts = new Map<string, IsolateHost>();
  private readonly code = new Map<string, { payload: Buffer; mapBytes: number }>();
  private codeBytes = 0;
  private closed = false;
  /** Directory hosts may read (see {@link IsolateExecutorOptions.runDir}). */
  readonly runDir: string;
  /** The node binary's directory, at a neutral path in the run directory. */
  readonly nodeDir: string;
  /**
   * What isolate hosts read besides their own program, mirrored into the run directory (see
   * {@link linkTree}): the native addon, undici, and an empty runtime directory (the host
   * program is bundled into each host's own directory).
   */
  readonly libs: { ivm: string; undici: string; runtime: string };
  private readonly ownRunDir: boolean;
  /** The server's egress ceiling. */
  readonly ceiling: Egress;

  constructor(options: IsolateExecutorOptions) {
    this.options = options;
    this.ownRunDir = options.runDir === undefined;
    this.runDir = options.runDir ?? makeRunDir();
    this.nodeDir = linkNode(this.runDir);
    const libs = join(this.runDir, "isolate-libs");
    this.libs = {
      ivm: linkTree(IVM_DIR, join(libs, "isolated-vm")),
      undici: linkTree(UNDICI_DIR, join(libs, "undici")),
      runtime: join(libs, "runtime"),
    };
    mkdirSync(this.libs.runtime, { recursive: true, mode: 0o755 });
    this.ceiling = options.egressCeiling ?? serverCeiling();
    for (const t of options.warmTenants ?? ["default"]) this.host(t);
  }

  /** Resolves once the hosts started so far are ready (for tests and benchmarks). */
  async waitReady(tenant = "default"): Promise<void> {
    await this.host(tenant).ready;
  }

  /** Live isolate hosts and their isolate counts, per tenant. */
  hostStats(): Record<string, { pid: number; isolates: number }> {
    const out: Record<string, { pid: number; isolates: number }> = {};
    for (const [t, h] of this.hosts) out[t] = { pid: h.pid, isolates: h.size };
    return out;
  }

  private host(tenant: string): IsolateHost {
    if (this.closed) throw new NimbusError("NIMBUS_UNAVAILABLE");
    let h = this.hosts.get(tenant);
    if (!h?.alive) {
      h = new IsolateHost(this, tenant);
      this.hosts.set(tenant, h);
    }
    return h;
  }

  /** @internal */
  hostExited(h: IsolateHost): void {
    if (this.hosts.get(h.tenant) === h) this.hosts.delete(h.tenant);
  }

  /**
   * The LOAD payload of a version: bundle, then its source map (if any). The map is left out
   * when both would not fit one frame; a bundle that alone does not fit cannot run here.
   */
  private readCode(codeDir: string, cache = true): { payload: Buffer; mapBytes: number } {
    let c = this.code.get(codeDir);
    if (c) {
      // Most recently used last.
      this.code.delete(codeDir);
      this.code.set(codeDir, c);
      return c;
    }
    const code = readFileSync(join(codeDir, "index.mjs"));
    if (code.length > MAX_BUNDLE) {
      throw new NimbusError(
        "NIMBUS_FUNCTION_ERROR",
        `The bundle is ${(code.length / 1048576).toFixed(1)} MB; the isolate executor loads bundles up to ${MAX_BUNDLE / 1048576} MB. Trim its dependencies, or set executor: "process" in its config.`,
      );
    }
    let map = Buffer.alloc(0);
    try {
      map = readFileSync(join(codeDir, "index.mjs.map"));
    } catch {
      // No source map: stacks show bundle positions.
    }
    if (code.length + map.length > MAX_BUNDLE) map = Buffer.alloc(0);
    c = { payload: map.length > 0 ? Buffer.concat([code, map]) : code, mapBytes: map.length };
    if (!cache) return c;
    // Versions are immutable, so their bytes can be kept (bounded, least recently used out).
    this.code.set(codeDir, c);
    this.codeBytes += c.payload.length;
    for (const [dir, old] of this.code) {
      if (this.codeBytes <= CODE_CACHE_BYTES) break;
      this.code.delete(dir);
      this.codeBytes -= old.payload.length;
    }
    return c;
  }

  private cpuMs(spec: InstanceSpec): number | undefined {
    const own = (spec as InstanceSpec & { cpuMs?: number }).cpuMs;
    return own ?? this.options.cpuMsFor?.(spec);
  }

  /**
   * What an instance costs the machine's memory budget, MB: an idle isolate is about 2 MB
   * (bare isolated-vm isolate ~1 MB + runtime ~0.7 MB), far below its `memory` limit, which
   * V8 enforces per isolate; the host's cgroup bounds the sum.
   */
  memoryCostMB(spec: InstanceSpec): number {
    return this.isolation(spec) === "context" ? CONTEXT_COST_MB : ISOLATE_COST_MB;
  }

  /** How an instance of this version is isolated (its config, else the server's default). */
  isolation(spec: InstanceSpec): Isolation {
    return this.options.isolationFor?.(spec) ?? this.options.isolation ?? "isolate";
  }

  async start(spec: InstanceSpec): Promise<Instance> {
    const t0 = performance.now();
    const { instance, loaded } = await this.host(spec.tenant).load(
      spec,
      this.readCode(spec.codeDir),
      this.cpuMs(spec),
      this.isolation(spec),
    );
    if (!loaded.ok) {
      throw new NimbusError(
        "NIMBUS_FUNCTION_ERROR",
        `The function failed to load: ${loaded.error?.message}`,
        {
          details: { stack: loaded.error?.stack },
        },
      );
    }
    // The host measured the module load; the rest was getting an isolate (and its host) ready.
    const totalMs = performance.now() - t0;
    const loadMs = Math.min(totalMs, Math.max(0, loaded.loadMs));
    instance.startPhases = { sandboxMs: totalMs - loadMs, loadMs };
    return instance;
  }

  async check(spec: InstanceSpec): Promise<LoadResult> {
    let code: { payload: Buffer; mapBytes: number };
    try {
      code = this.readCode(spec.codeDir, false);
    } catch (err) {
      const message =
        err instanceof NimbusError ? err.message : `The bundle could not be read: ${(err as Error).message}`;
      return { ok: false, loadMs: 0, error: { message } };
    }
    // A deploy's check loads into an isolate of its own, whatever the function's isolation: a
    // version must not fail its check because a live neighbour filled a shared heap, nor
    // take a shared isolate (and its functions) down with a bundle that fails to load.
    const { instance, loaded } = await this.host(spec.tenant).load(spec, code, undefined, "isolate");
    if (loaded.ok) await instance.stop();
    return loaded;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.hosts.values()].map((h) => h.stop()));
    this.hosts.clear();
    if (this.ownRunDir) rmSync(this.runDir, { recursive: true, force: true });
  }
}
