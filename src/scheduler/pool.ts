/**
 * The scheduler: one pool of instances per function version. Reuses warm instances, starts
 * new ones up to `maxInstances` (and the machine's memory budget, evicting idle instances of
 * other functions least-recently-used first), holds requests in a bounded queue beyond that
 * (like Knative's activator; 429 with `Retry-After` and the limit's own code past it), keeps
 * `minInstances` warm, pre-scales from the autoscaler's decisions, and stops idle instances.
 */
import { totalmem } from "node:os";
import type { FunctionConfig } from "../build/config.ts";
import { type ErrorCode, NimbusError } from "../errors.ts";
import type { Executor, ExecutorKind, Instance, InstanceSpec } from "../executors/types.ts";
import {
  type AutoscalerConfig,
  type AutoscalerState,
  DEFAULT_AUTOSCALER,
  decide,
  initialState,
  observe,
} from "./autoscaler.ts";
import { reapIdle } from "./reaper.ts";

/** A granted instance. */
export interface Lease {
  instance: Instance;
  /** The request waited for this instance to start (a cold start). */
  cold: boolean;
}

interface Waiter {
  resolve: (lease: Lease) => void;
  reject: (err: NimbusError) => void;
  timer: NodeJS.Timeout;
}

/** Per-version instance counts by state. */
export interface PoolStats {
  version: number;
  starting: number;
  idle: number;
  busy: number;
  queued: number;
  /** What the autoscaler last wanted (undefined before its first decision). */
  desired?: number;
}

/** Which limit kept a request waiting. */
type Block = "function" | "reserved" | "machine" | "memory";

const BLOCK_CODES: Record<Block, ErrorCode> = {
  function: "NIMBUS_THROTTLED",
  reserved: "NIMBUS_RESERVED_CONCURRENCY_EXCEEDED",
  machine: "NIMBUS_MACHINE_CONCURRENCY_EXCEEDED",
  memory: "NIMBUS_MACHINE_MEMORY_EXHAUSTED",
};

/** The instances of one function version. */
export class VersionPool {
  readonly spec: InstanceSpec;
  readonly config: FunctionConfig;
  readonly instances: Instance[] = [];
  readonly fnKey: string;
  /** What one instance costs the memory budget, MB (an isolate far less than its limit). */
  private readonly memoryCost: number;
  private readonly served = new WeakSet<Instance>();
  /** Instances whose memory was already given back to the budget. */
  private readonly memoryFreed = new WeakSet<Instance>();
  private starting = 0;
  private readonly waiters: Waiter[] = [];
  private readonly executor: Executor;
  private readonly scheduler: Scheduler;
  private lastBlock: Block = "function";
  private autoscale: AutoscalerState = initialState();
  private readonly autoscaleConfig: AutoscalerConfig;
  desired: number | undefined;
  closed = false;
  /** Until when idle instances are kept (see holdWarm). */
  private warmUntil = 0;

  constructor(scheduler: Scheduler, executor: Executor, spec: InstanceSpec, config: FunctionConfig) {
    this.scheduler = scheduler;
    this.executor = executor;
    this.spec = spec;
    this.config = config;
    this.fnKey = `${spec.tenant}/${spec.functionName}`;
    this.memoryCost = executor.memoryCostMB?.(spec) ?? spec.memoryMB;
    this.autoscaleConfig = {
      ...DEFAULT_AUTOSCALER,
      // One request per instance (Lambda's model) needs no headroom: aim at full use.
      ...(config.concurrency === 1 ? { targetUtilization: 1 } : {}),
      ...scheduler.autoscalerOverrides,
      targetConcurrency: config.concurrency,
      minInstances: config.minInstances,
      maxInstances: config.maxInstances,
      idleTimeoutMs: config.idleTimeoutMs,
    };
  }

  /** Requests running plus waiting on this version. */
  get load(): number {
    let n = this.waiters.length;
    for (const i of this.instances) n += i.inflight;
    return n;
  }

  get queued(): number {
    return this.waiters.length;
  }

  /** Grants an instance with free capacity, starting or queueing as the limits allow. */
  acquire(): Promise<Lease> {
    if (this.waiters.length === 0) {
      const lease = this.tryGrant(false);
      if (lease) return Promise.resolve(lease);
    }
    if (this.closed) return Promise.reject(new NimbusError("NIMBUS_UNAVAILABLE"));
    const room = this.room();
    if (this.waiters.length >= this.config.maxQueue + room.n) {
      this.lastBlock = room.block;
      return Promise.reject(this.throttled());
    }
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(this.throttled());
        }, this.scheduler.queueWaitMs),
      };
      this.waiters.push(waiter);
      this.scheduler.waiting.add(this);
      this.scaleForWaiters();
    });
  }

  /** Called when an invocation on this pool ended: frees its slots and serves queues. */
  release(): void {
    this.scheduler.released(this.fnKey);
    this.dispatch();
    this.scheduler.kick(this);
  }

  private throttled(): NimbusError {
    const b = this.lastBlock;
    const name = this.spec.functionName;
    const message = {
      function: `Function '${name}' is at maxInstances (${this.config.maxInstances}) × concurrency (${this.config.concurrency}) and its queue is full; retry after 1 second or raise maxInstances.`,
      reserved: `Function '${name}' is at its reserved concurrency (${this.config.reservedConcurrency}) and its queue is full; retry after 1 second or raise reservedConcurrency.`,
      machine: `This machine runs its limit of ${this.scheduler.maxConcurrency} invocations at once (less what other functions reserve) and the queue is full; retry after 1 second.`,
      memory: `No memory is left on this machine for another instance of '${name}' (budget ${this.scheduler.memoryBudgetMB} MB, every instance busy); retry after 1 second.`,
    }[b];
    return new NimbusError(BLOCK_CODES[b], message, {
      headers: { "retry-after": "1" },
      details: { limit: b },
    });
  }

  /**
   * Requests that can start running soon without counting as queued: free slots, slots of
   * starting instances, and slots of instances still startable, capped by the function's
   * reserved concurrency and the machine's limit. `block` names the binding limit.
   */
  private room(): { n: number; block: Block } {
    let n = this.freeSlots() + this.starting * this.config.concurrency + this.startable();
    let block: Block = "function";
    const reserved = this.scheduler.reservedRemaining(this.fnKey, this.config);
    // On a tie the concurrency limit is the one to name: it is what sized the instances.
    if (reserved <= n && reserved !== Number.POSITIVE_INFINITY) {
      n = reserved;
      block = "reserved";
    }
    const machine = this.scheduler.machineRemaining(this.config);
    if (machine <= n && machine !== Number.POSITIVE_INFINITY) {
      n = machine;
      block = "machine";
    }
    return { n, block };
  }

  /**
   * Instances that can be busy at once under every limit: maxInstances, and the invocations
   * the function may run at once (its reservation, or the machine's unreserved share) over
   * its concurrency. E.g. a machine limit of 1,000 at concurrency 500 makes 2 instances
   * useful, whatever maxInstances says; starting a third would only cost memory and CPU.
   */
  usefulInstances(): number {
    const cap = this.scheduler.concurrencyCap(this.config);
    return Math.min(this.config.maxInstances, Math.max(1, Math.ceil(cap / this.config.concurrency)));
  }

  private startable(): number {
    return (
      Math.max(0, this.usefulInstances() - this.instances.length - this.starting) * this.config.concurrency
    );
  }

  private findFree(): Instance | undefined {
    // Prefer the most recently used instance so that surplus ones go idle and get reaped.
    let best: Instance | undefined;
    for (const i of this.instances) {
      if ((i.state === "idle" || i.state === "busy") && i.inflight < this.config.concurrency) {
        if (!best || i.lastUsed > best.lastUsed) best = i;
      }
    }
    return best;
  }

  /** Takes a slot of a free instance if every limit allows, else records what blocked. */
  private tryGrant(waited: boolean): Lease | undefined {
    const free = this.findFree();
    if (!free) {
      if (this.startable() === 0) this.lastBlock = "function";
      return undefined;
    }
    const block = this.scheduler.admit(this.fnKey, this.config);
    if (block) {
      this.lastBlock = block;
      return undefined;
    }
    free.inflight++;
    free.state = "busy";
    // Cold: the request waited while a fresh instance started for it.
    const cold = waited && !this.served.has(free);
    this.served.add(free);
    return { instance: free, cold };
  }

  /** Serves queued requests while instances and limits allow. */
  dispatch(): void {
    while (this.waiters.length > 0) {
      const lease = this.tryGrant(true);
      if (!lease) break;
      const w = this.waiters.shift()!;
      clearTimeout(w.timer);
      w.resolve(lease);
    }
    this.scaleForWaiters();
  }

  /** Starts instances while waiters outnumber the capacity that is starting. */
  private scaleForWaiters(): void {
    while (
      !this.closed &&
      this.waiters.length > this.starting * this.config.concurrency + this.freeSlots() &&
      this.instances.length + this.starting < this.usefulInstances()
    ) {
      if (!this.startOne()) break;
    }
  }

  private freeSlots(): number {
    let n = 0;
    for (const i of this.instances) {
      if (i.state === "idle" || i.state === "busy") n += Math.max(0, this.config.concurrency - i.inflight);
    }
    return n;
  }

  /**
   * Starts one instance if the memory budget allows (evicting idle instances of other
   * functions if needed); it joins the pool and serves the queue when ready. A provisioned
   * instance (minInstances) is started ahead of requests. Returns false when out of memory.
   */
  startOne(): boolean {
    if (!this.scheduler.reserveMemory(this.memoryCost, this)) {
      this.lastBlock = "memory";
      return false;
    }
    const first = this.instances.length === 0 && this.starting === 0;
    this.starting++;
    this.executor.start(this.spec, { first }).then(
      (instance) => {
        this.starting--;
        if (this.closed) {
          this.scheduler.freeMemory(this.memoryCost);
          void instance.stop();
          return;
        }
        this.instances.push(instance);
        this.scheduler.observer?.started(this.executor.kind, instance);
        instance.onExit((reason) => {
          this.scheduler.observer?.exited(reason);
          this.giveBackMemory(instance);
          const i = this.instances.indexOf(instance);
          if (i >= 0) this.instances.splice(i, 1);
          this.ensureMin();
          this.dispatch();
        });
        this.dispatch();
      },
      (err: unknown) => {
        this.starting--;
        this.scheduler.freeMemory(this.memoryCost);
        const e =
          err instanceof NimbusError ? err : new NimbusError("NIMBUS_UNAVAILABLE", undefined, { cause: err });
        // Every waiter would hit the same failure: answer them all now.
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(e);
        }
      },
    );
    return true;
  }

  private giveBackMemory(instance: Instance): void {
    if (this.memoryFreed.has(instance)) return;
    this.memoryFreed.add(instance);
    this.scheduler.freeMemory(this.memoryCost);
  }

  /** Starts instances until `minInstances` are up (provisioned, module loaded). */
  ensureMin(): void {
    while (!this.closed && this.instances.length + this.starting < this.config.minInstances) {
      if (!this.startOne()) break;
    }
  }

  /**
   * One autoscaler tick: record the load, decide, and start instances ahead of demand when
   * the decision wants more than there are (scale-down is left to idle reaping, which the
   * decision bounds from below).
   */
  autoscaleTick(now: number): void {
    this.autoscale = observe(this.autoscale, { t: now, concurrency: this.load }, this.autoscaleConfig);
    const { decision, state } = decide(this.autoscale, now, this.instances.length, this.autoscaleConfig);
    this.autoscale = state;
    this.desired = Math.min(decision.desired, this.usefulInstances());
    // Pre-scale only while requests are here: after the load is gone the stable window still
    // remembers it, and restarting instances the idle reaper just stopped would only churn.
    while (!this.closed && this.load > 0 && this.instances.length + this.starting < this.desired) {
      if (!this.startOne()) break;
    }
  }

  /** Idle instances, for LRU eviction: [instance, lastUsed]. Provisioned ones are kept. */
  evictable(): Instance[] {
    const spare = this.instances.length - this.config.minInstances;
    if (spare <= 0) return [];
    return this.instances
      .filter((i) => i.state === "idle" && i.inflight === 0 && i.background === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed)
      .slice(0, spare);
  }

  /** Stops one instance now (eviction). */
  evict(instance: Instance): void {
    const i = this.instances.indexOf(instance);
    if (i < 0) return;
    instance.state = "draining";
    this.instances.splice(i, 1);
    this.giveBackMemory(instance);
    void instance.stop();
  }

  /**
   * Keeps this pool's instances from idle reaping until `until` (ms since the epoch): a
   * schedule's pre-warmed instance must still be there at the tick, whatever the idle timeout.
   */
  holdWarm(until: number): void {
    this.warmUntil = Math.max(this.warmUntil, until);
  }

  /** Stops instances idle past the idle window (keeping minInstances). */
  reap(now: number): number {
    if (now < this.warmUntil) return 0;
    const ids = reapIdle(this.instances, now, {
      idleTimeoutMs: this.config.idleTimeoutMs,
      minInstances: this.config.minInstances,
    });
    for (const id of ids) {
      const inst = this.instances.find((i) => i.id === id);
      if (inst) this.evict(inst);
    }
    return ids.length;
  }

  stats(): PoolStats {
    let idle = 0;
    let busy = 0;
    for (const i of this.instances) {
      if (i.inflight > 0) busy++;
      else idle++;
    }
    return {
      version: this.spec.version,
      starting: this.starting,
      idle,
      busy,
      queued: this.waiters.length,
      desired: this.desired,
    };
  }

  /** Stops every instance (waits for in-flight invocations up to `deadlineMs`). */
  async close(deadlineMs = 10_000): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new NimbusError("NIMBUS_UNAVAILABLE"));
    }
    const until = Date.now() + deadlineMs;
    while (this.instances.some((i) => i.inflight > 0 || i.background > 0) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await Promise.all(this.instances.splice(0).map((i) => i.stop()));
  }
}

/** Options of the scheduler. */
export interface SchedulerOptions {
  executors: Partial<Record<ExecutorKind, Executor>>;
  /** How long a request may wait in the queue before 429, ms. @default 10000 */
  queueWaitMs?: number;
  /** How often idle instances are looked for, ms. @default 1000 */
  reapIntervalMs?: number;
  /** How often the autoscaler samples load and decides, ms (0 turns it off). @default 1000 */
  autoscaleIntervalMs?: number;
  /** Invocations running at once on this machine, all functions together. @default 1000 */
  maxConcurrency?: number;
  /**
   * Memory (MB) all instances together may be given (their `memory` settings summed).
   * @default the machine's memory less `memoryReserveMB`
   */
  memoryBudgetMB?: number;
  /** Memory (MB) kept free for the platform and the system. @default 1024 */
  memoryReserveMB?: number;
  /** Overrides of the autoscaler's windows and rates (tests, benchmarks). */
  autoscaler?: Partial<typeof DEFAULT_AUTOSCALER>;
  /** Told of instance starts and exits (metrics). */
  observer?: SchedulerObserver;
}

/** Receives instance lifecycle events (metrics); called off the invocation path. */
export interface SchedulerObserver {
  started(executor: ExecutorKind, instance: Instance): void;
  /** An instance is gone; `reason` when the platform stopped it for one. */
  exited(reason: NimbusError | undefined): void;
}

/** Machine-wide limits and all pools, keyed by tenant/function@version. */
export class Scheduler {
  private readonly pools = new Map<string, VersionPool>();
  /** Told of instance starts and exits (metrics). */
  readonly observer: SchedulerObserver | undefined;
  private readonly options: SchedulerOptions;
  private readonly timers: NodeJS.Timeout[] = [];
  readonly queueWaitMs: number;
  readonly maxConcurrency: number;
  readonly memoryBudgetMB: number;
  readonly autoscalerOverrides: Partial<typeof DEFAULT_AUTOSCALER>;
  private memoryUsedMB = 0;
  private running = 0;
  private readonly fnRunning = new Map<string, number>();
  /** Reserved concurrency per function, from the config of its pools. */
  private readonly reserved = new Map<string, number>();
  private reservedTotal = 0;

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.observer = options.observer;
    this.queueWaitMs = options.queueWaitMs ?? 10_000;
    this.maxConcurrency = options.maxConcurrency ?? 1000;
    this.memoryBudgetMB =
      options.memoryBudgetMB ??
      Math.max(256, Math.floor(totalmem() / 1048576) - (options.memoryReserveMB ?? 1024));
    this.autoscalerOverrides = options.autoscaler ?? {};
    const reap = setInterval(() => this.reap(Date.now()), options.reapIntervalMs ?? 1000);
    reap.unref();
    this.timers.push(reap);
    const every = options.autoscaleIntervalMs ?? 1000;
    if (every > 0) {
      const t = setInterval(() => this.autoscaleTick(Date.now()), every);
      t.unref();
      this.timers.push(t);
    }
  }

  /** The pool of a version, created on first use. */
  pool(spec: InstanceSpec, config: FunctionConfig): VersionPool {
    const key = `${spec.tenant}/${spec.functionName}@${spec.version}`;
    let p = this.pools.get(key);
    if (!p) {
      const executor = this.options.executors[config.executor];
      if (!executor) {
        throw new NimbusError(
          "NIMBUS_UNAVAILABLE",
          `The '${config.executor}' executor is not available on this server.`,
        );
      }
      p = new VersionPool(this, executor, spec, config);
      this.pools.set(key, p);
      this.setReservation(p.fnKey, config.reservedConcurrency);
    }
    return p;
  }

  private setReservation(fnKey: string, n: number | undefined): void {
    this.reservedTotal -= this.reserved.get(fnKey) ?? 0;
    if (n === undefined) this.reserved.delete(fnKey);
    else this.reserved.set(fnKey, n);
    this.reservedTotal += n ?? 0;
  }

  /**
   * Whether one more invocation of `fnKey` may run now: within its reserved concurrency if it
   * has one, else within the machine's limit less what other functions reserve.
   */
  admit(fnKey: string, config: FunctionConfig): Block | undefined {
    const mine = this.fnRunning.get(fnKey) ?? 0;
    if (config.reservedConcurrency !== undefined) {
      if (mine >= config.reservedConcurrency) return "reserved";
    } else {
      if (this.unreservedRunning() >= this.maxConcurrency - this.reservedTotal) return "machine";
    }
    this.running++;
    this.fnRunning.set(fnKey, mine + 1);
    return undefined;
  }

  /** The most invocations a function may run at once: its reservation, or the unreserved share. */
  concurrencyCap(config: FunctionConfig): number {
    return config.reservedConcurrency ?? Math.max(0, this.maxConcurrency - this.reservedTotal);
  }

  /** Invocations `fnKey` may still start under its reservation (Infinity without one). */
  reservedRemaining(fnKey: string, config: FunctionConfig): number {
    if (config.reservedConcurrency === undefined) return Number.POSITIVE_INFINITY;
    return Math.max(0, config.reservedConcurrency - (this.fnRunning.get(fnKey) ?? 0));
  }

  /** Invocations an unreserved function may still start machine-wide (Infinity for reserved ones). */
  machineRemaining(config: FunctionConfig): number {
    if (config.reservedConcurrency !== undefined) return Number.POSITIVE_INFINITY;
    return Math.max(0, this.maxConcurrency - this.reservedTotal - this.unreservedRunning());
  }

  private unreservedRunning(): number {
    let n = this.running;
    for (const [k, r] of this.reserved) n -= Math.min(r, this.fnRunning.get(k) ?? 0);
    return n;
  }

  /** An invocation of `fnKey` ended. */
  released(fnKey: string): void {
    this.running--;
    const n = (this.fnRunning.get(fnKey) ?? 1) - 1;
    if (n <= 0) this.fnRunning.delete(fnKey);
    else this.fnRunning.set(fnKey, n);
  }

  /**
   * Pools that queued requests since they were last seen empty: only these are looked at
   * after a release, not every pool on the machine (this runs once per invocation).
   */
  readonly waiting = new Set<VersionPool>();

  /** After a release: pools waiting on machine-wide limits may proceed. */
  kick(except: VersionPool): void {
    if (this.running >= this.maxConcurrency) return;
    for (const p of this.waiting) {
      if (p.queued === 0 || p.closed) this.waiting.delete(p);
      else if (p !== except) p.dispatch();
    }
  }

  /**
   * Reserves memory for one more instance of `pool`, evicting idle instances of other
   * functions (least recently used first) when the budget is short.
   */
  reserveMemory(mb: number, pool: VersionPool): boolean {
    if (this.memoryUsedMB + mb > this.memoryBudgetMB) {
      const candidates: { p: VersionPool; i: Instance }[] = [];
      for (const p of this.pools.values()) {
        if (p === pool) continue;
        for (const i of p.evictable()) candidates.push({ p, i });
      }
      candidates.sort((a, b) => a.i.lastUsed - b.i.lastUsed);
      for (const c of candidates) {
        if (this.memoryUsedMB + mb <= this.memoryBudgetMB) break;
        // Its memory is given back to the budget at once (the pool does it on evict).
        c.p.evict(c.i);
      }
      if (this.memoryUsedMB + mb > this.memoryBudgetMB) return false;
    }
    this.memoryUsedMB += mb;
    return true;
  }

  freeMemory(mb: number): void {
    this.memoryUsedMB = Math.max(0, this.memoryUsedMB - mb);
  }

  /** Memory now given to instances, MB. */
  get memoryUsed(): number {
    return this.memoryUsedMB;
  }

  /** Invocations now running, machine-wide. */
  get runningNow(): number {
    return this.running;
  }

  /** Pools of one function (all versions). */
  poolsOf(tenant: string, name: string): VersionPool[] {
    const prefix = `${tenant}/${name}@`;
    return [...this.pools.entries()].filter(([k]) => k.startsWith(prefix)).map(([, p]) => p);
  }

  autoscaleTick(now: number): void {
    for (const p of this.pools.values()) p.autoscaleTick(now);
  }

  /** Every pool's counts by state, with its function's name. */
  allStats(): (PoolStats & { fn: string })[] {
    return [...this.pools.values()].map((p) => ({ ...p.stats(), fn: p.spec.functionName }));
  }

  /** Stops idle instances everywhere; drops empty pools. Returns how many were stopped. */
  reap(now: number): number {
    let n = 0;
    for (const [key, p] of this.pools) {
      n += p.reap(now);
      const s = p.stats();
      if (
        p.instances.length === 0 &&
        s.starting === 0 &&
        s.queued === 0 &&
        p.config.minInstances === 0 &&
        !p.desired
      ) {
        this.pools.delete(key);
        if (this.poolsOf(p.spec.tenant, p.spec.functionName).length === 0)
          this.setReservation(p.fnKey, undefined);
      }
    }
    return n;
  }

  /** Stops and forgets every pool of a function (on delete). */
  async drop(tenant: string, name: string): Promise<void> {
    const prefix = `${tenant}/${name}@`;
    const closing: Promise<void>[] = [];
    for (const [k, p] of this.pools) {
      if (k.startsWith(prefix)) {
        this.pools.delete(k);
        this.setReservation(p.fnKey, undefined);
        closing.push(p.close(0));
      }
    }
    await Promise.all(closing);
  }

  async close(deadlineMs = 10_000): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.all([...this.pools.values()].map((p) => p.close(deadlineMs)));
    this.pools.clear();
  }
}
