/**
 * Schedules: each function's `schedule` (croner) turns every tick into a durable async
 * event (kind `scheduled`, de-duplicated per cron and tick time, so a tick is stored once
 * even when it fires twice), delivered by the dispatcher with the usual retries. The payload
 * is EventBridge's scheduled event (a Lambda handler's `event`); a Workers module gets
 * `scheduled(controller, env, ctx)`.
 *
 * Pre-warm: `prewarmMs` before each tick, an instance is started if the function has none
 * idle, and kept from idle reaping until `prewarmMs` after the tick, whatever its idle
 * timeout, so scheduled runs are not cold starts (`prewarmMs: 0` turns this off).
 * Missed ticks (server down): `skip`, or `run-once` at start; the last tick of each
 * schedule is kept in `<data dir>/schedules.json`.
 */
import { randomUUID } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cron } from "croner";
import type { Invoker } from "../invoker/invoker.ts";
import type { Registry } from "../invoker/registry.ts";
import type { VersionRecord } from "../store/types.ts";
import type { AsyncInvocations } from "./async.ts";

/** The EventBridge scheduled event (pure). */
export function scheduledEvent(fn: string, cron: string, at: number): Record<string, unknown> {
  return {
    version: "0",
    id: randomUUID(),
    "detail-type": "Scheduled Event",
    source: "aws.events",
    account: "000000000000",
    time: new Date(at).toISOString().replace(/\.\d+Z$/, "Z"),
    region: "local",
    resources: [`arn:nimbus:events:local:schedule/${fn}/${cron}`],
    detail: {},
  };
}

interface Job {
  key: string;
  fn: string;
  version: number;
  expr: string;
  cron: Cron;
  prewarm?: NodeJS.Timeout;
}

/** Runs every function's schedules. */
export class Schedules {
  private readonly o: {
    invoker: Invoker;
    registry: Registry;
    async: AsyncInvocations;
    dataDir: string;
    log: (msg: string) => void;
    prewarmMs: number;
  };
  private readonly jobs = new Map<string, Job>();
  private last: Record<string, number> = {};
  private readonly timer: NodeJS.Timeout;

  constructor(o: {
    invoker: Invoker;
    registry: Registry;
    async: AsyncInvocations;
    dataDir: string;
    log: (msg: string) => void;
    /** How long before each tick an instance is started; 0 = no pre-warm. @default 5000 */
    prewarmMs?: number;
  }) {
    this.o = { ...o, prewarmMs: o.prewarmMs ?? 5000 };
    try {
      this.last = JSON.parse(readFileSync(join(o.dataDir, "schedules.json"), "utf8"));
    } catch {}
    // Deploys and deletes change schedules: re-read the registry every few seconds.
    this.timer = setInterval(() => this.sync(), 5000);
    this.timer.unref();
  }

  /** Starts, keeps or stops jobs to match every function's latest version. */
  sync(): void {
    const want = new Map<string, { v: VersionRecord; expr: string }>();
    for (const f of this.o.registry.all()) {
      const v = this.o.registry.getVersion(f.tenant, f.name, f.latest);
      for (const expr of v?.config.schedule ?? [])
        want.set(`${f.tenant}/${f.name}@${f.latest} ${expr}`, { v: v!, expr });
    }
    for (const [key, job] of this.jobs) {
      if (!want.has(key)) {
        job.cron.stop();
        clearTimeout(job.prewarm);
        this.jobs.delete(key);
      }
    }
    for (const [key, { v, expr }] of want) {
      if (this.jobs.has(key)) continue;
      const job: Job = {
        key,
        fn: v.name,
        version: v.version,
        expr,
        cron: new Cron(expr, { timezone: v.config.timezone, protect: true, paused: true }),
      };
      this.jobs.set(key, job);
      const lastKey = `${v.tenant}/${v.name} ${expr}`;
      const last = this.last[lastKey];
      if (v.config.missedTicks === "run-once" && last !== undefined) {
        const missed = job.cron.nextRun(new Date(last));
        if (missed && missed.getTime() < Date.now() - 1000) this.fire(v, job, missed.getTime());
      }
      job.cron = new Cron(expr, { timezone: v.config.timezone, protect: true }, () => {
        const cur = this.o.registry.getVersion(v.tenant, v.name, v.version);
        if (cur) this.fire(cur, job, Math.round(Date.now() / 1000) * 1000);
        this.armPrewarm(v, job);
      });
      this.armPrewarm(v, job);
    }
  }

  private armPrewarm(v: VersionRecord, job: Job): void {
    clearTimeout(job.prewarm);
    if (this.o.prewarmMs <= 0) return;
    const next = job.cron.nextRun();
    if (!next) return;
    const tick = next.getTime();
    const wait = Math.max(0, tick - Date.now() - this.o.prewarmMs);
    job.prewarm = setTimeout(() => {
      try {
        const pool = this.o.invoker.poolFor(v);
        // Kept until the tick's run has had time to take it (the tick is stored, then
        // leased): a 1 s idle timeout must not stop it before the tick it was started for.
        pool.holdWarm(tick + this.o.prewarmMs);
        const s = pool.stats();
        if (s.idle === 0 && s.starting === 0) pool.startOne();
      } catch (err) {
        this.o.log(`nimbus: pre-warming ${v.name} failed: ${String(err)}`);
      }
    }, wait);
    job.prewarm.unref();
  }

  private fire(v: VersionRecord, job: Job, at: number): void {
    const lastKey = `${v.tenant}/${v.name} ${job.expr}`;
    this.last[lastKey] = at;
    try {
      const file = join(this.o.dataDir, "schedules.json");
      writeFileSync(`${file}.tmp`, JSON.stringify(this.last));
      renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.o.log(`nimbus: saving schedule state failed: ${String(err)}`);
    }
    this.o.async
      .submit(
        v,
        {
          tenant: v.tenant,
          fn: v.name,
          kind: "scheduled",
          method: "POST",
          path: "/",
          host: "localhost",
          headers: [
            ["content-type", "application/json"],
            ["x-nimbus-cron", job.expr],
          ],
          sourceIp: "",
          trigger: "cron",
        },
        Buffer.from(JSON.stringify(scheduledEvent(v.name, job.expr, at))),
        `cron:${job.expr}:${at}`,
      )
      .catch((err: unknown) =>
        this.o.log(`nimbus: schedule ${job.expr} of ${v.name} not stored: ${String(err)}`),
      );
  }

  close(): void {
    clearInterval(this.timer);
    for (const j of this.jobs.values()) {
      j.cron.stop();
      clearTimeout(j.prewarm);
    }
    this.jobs.clear();
  }
}
