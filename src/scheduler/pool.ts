/**
 * The scheduler: one pool of instances per function version. Reuses warm instances, starts
 * new ones up to `maxInstances`, holds requests in a bounded queue beyond that (429 with
 * `Retry-After` past it), keeps `minInstances` warm, and stops idle instances.
 */
import type { FunctionConfig } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { Executor, ExecutorKind, Instance, InstanceSpec } from "../executors/types.ts";
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
}

/** The instances of one function version. */
export class VersionPool {
  readonly spec: InstanceSpec;
  readonly config: FunctionConfig;
  readonly instances: Instance[] = [];
  private readonly served = new WeakSet<Instance>();
  private starting = 0;
  private readonly waiters: Waiter[] = [];
  private readonly executor: Executor;
  private readonly queueWaitMs: number;
  closed = false;

  constructor(executor: Executor, spec: InstanceSpec, config: FunctionConfig, queueWaitMs: number) {
    this.executor = executor;
    this.spec = spec;
    this.config = config;
    this.queueWaitMs = queueWaitMs;
  }

  /** Grants an instance with free capacity, starting or queueing as the limits allow. */
  acquire(): Promise<Lease> {
    const free = this.findFree();
    if (free) return Promise.resolve(this.grant(free));
    if (this.closed) return Promise.reject(new NimbusError("NIMBUS_UNAVAILABLE"));
    // Room: the queue itself, plus what starting instances and instances still startable will take.
    if (
      this.waiters.length >=
      this.config.maxQueue + this.starting * this.config.concurrency + this.startable()
    ) {
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
        }, this.queueWaitMs),
      };
      this.waiters.push(waiter);
      this.scaleForWaiters();
    });
  }

  /** Called when an invocation on `instance` ended: serve the queue. */
  release(): void {
    this.dispatch();
  }

  private throttled(): NimbusError {
    return new NimbusError(
      "NIMBUS_THROTTLED",
      `Function '${this.spec.functionName}' is at maxInstances (${this.config.maxInstances}) × concurrency (${this.config.concurrency}) and its queue is full; retry after 1 second or raise maxInstances.`,
      { headers: { "retry-after": "1" }, details: { limit: "function" } },
    );
  }

  private startable(): number {
    return (
      Math.max(0, this.config.maxInstances - this.instances.length - this.starting) * this.config.concurrency
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

  /** Takes one concurrency slot of `instance` now (the instance frees it when the invocation ends). */
  private grant(instance: Instance): Lease {
    instance.inflight++;
    instance.state = "busy";
    const cold = !this.served.has(instance);
    this.served.add(instance);
    return { instance, cold };
  }

  private dispatch(): void {
    while (this.waiters.length > 0) {
      const free = this.findFree();
      if (!free) break;
      const w = this.waiters.shift()!;
      clearTimeout(w.timer);
      w.resolve(this.grant(free));
    }
    this.scaleForWaiters();
  }

  /** Starts instances while waiters outnumber the capacity that is starting. */
  private scaleForWaiters(): void {
    while (
      !this.closed &&
      this.waiters.length > this.starting * this.config.concurrency &&
      this.instances.length + this.starting < this.config.maxInstances
    ) {
      this.startOne();
    }
  }

  /**
   * Starts one instance; it joins the pool and serves the queue when ready. A provisioned
   * instance (minInstances) counts as warm: its first request is not a cold start.
   */
  startOne(provisioned = false): void {
    this.starting++;
    this.executor.start(this.spec).then(
      (instance) => {
        this.starting--;
        if (this.closed) {
          void instance.stop();
          return;
        }
        this.instances.push(instance);
        if (provisioned) this.served.add(instance);
        instance.onExit(() => {
          const i = this.instances.indexOf(instance);
          if (i >= 0) this.instances.splice(i, 1);
          this.ensureMin();
          this.dispatch();
        });
        this.dispatch();
      },
      (err: unknown) => {
        this.starting--;
        const e =
          err instanceof NimbusError ? err : new NimbusError("NIMBUS_UNAVAILABLE", undefined, { cause: err });
        // Every waiter would hit the same failure: answer them all now.
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(e);
        }
      },
    );
  }

  /** Starts instances until `minInstances` are up (provisioned, module loaded). */
  ensureMin(): void {
    while (!this.closed && this.instances.length + this.starting < this.config.minInstances)
      this.startOne(true);
  }

  /** Stops instances idle past the idle window (keeping minInstances). */
  reap(now: number): number {
    const ids = reapIdle(this.instances, now, {
      idleTimeoutMs: this.config.idleTimeoutMs,
      minInstances: this.config.minInstances,
    });
    for (const id of ids) {
      const inst = this.instances.find((i) => i.id === id);
      if (!inst) continue;
      inst.state = "draining";
      this.instances.splice(this.instances.indexOf(inst), 1);
      void inst.stop();
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
    return { version: this.spec.version, starting: this.starting, idle, busy, queued: this.waiters.length };
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
}

/** All pools, keyed by tenant/function@version. */
export class Scheduler {
  private readonly pools = new Map<string, VersionPool>();
  private readonly options: SchedulerOptions;
  private readonly reaper: NodeJS.Timeout;

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.reaper = setInterval(() => this.reap(Date.now()), options.reapIntervalMs ?? 1000);
    this.reaper.unref();
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
      p = new VersionPool(executor, spec, config, this.options.queueWaitMs ?? 10_000);
      this.pools.set(key, p);
    }
    return p;
  }

  /** Pools of one function (all versions). */
  poolsOf(tenant: string, name: string): VersionPool[] {
    const prefix = `${tenant}/${name}@`;
    return [...this.pools.entries()].filter(([k]) => k.startsWith(prefix)).map(([, p]) => p);
  }

  /** Stops idle instances everywhere; drops empty pools. Returns how many were stopped. */
  reap(now: number): number {
    let n = 0;
    for (const [key, p] of this.pools) {
      n += p.reap(now);
      if (
        p.instances.length === 0 &&
        p.stats().starting === 0 &&
        p.stats().queued === 0 &&
        p.config.minInstances === 0
      ) {
        this.pools.delete(key);
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
        closing.push(p.close(0));
      }
    }
    await Promise.all(closing);
  }

  async close(deadlineMs = 10_000): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.pools.values()].map((p) => p.close(deadlineMs)));
    this.pools.clear();
  }
}
