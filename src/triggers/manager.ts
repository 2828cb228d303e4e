/**
 * Runs every function's triggers: starts, keeps or stops adapters to match each function's
 * latest version (re-read every few seconds and after deploys), stores their batches as
 * durable async events of kind `queue`, and reports each trigger's state.
 */
import type { AsyncInvocations, EventMeta } from "../events/async.ts";
import type { Outcomes } from "../events/outcomes.ts";
import { uuidv7 } from "../invoker/invoker.ts";
import type { Registry } from "../invoker/registry.ts";
import type { BatchWire } from "../runtime/batch.ts";
import type { TriggerConfig } from "./config.ts";
import { triggerLabel } from "./config.ts";
import { MqttAdapter } from "./mqtt.ts";
import { NatsAdapter } from "./nats.ts";
import type { BatchSink, Incoming, TriggerAdapter, TriggerStatus } from "./types.ts";

/** The stored payload of one batch (pure). */
export function batchPayload(source: string, label: string, msgs: Incoming[]): Buffer {
  const w: BatchWire = {
    source,
    trigger: label,
    messages: msgs.map((m) => ({
      id: uuidv7(),
      timestamp: m.at,
      subject: m.subject,
      data: m.data.toString("base64"),
      attributes: m.attributes,
    })),
  };
  return Buffer.from(JSON.stringify(w));
}

/** The trigger manager. */
export class Triggers {
  private readonly o: {
    registry: Registry;
    async: AsyncInvocations;
    outcomes: Outcomes;
    log: (msg: string) => void;
  };
  private readonly adapters = new Map<string, { tenant: string; adapter: TriggerAdapter }>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(o: {
    registry: Registry;
    async: AsyncInvocations;
    /** Where broker acks wait for their event's terminal outcome. */
    outcomes: Outcomes;
    log: (msg: string) => void;
  }) {
    this.o = o;
    this.timer = setInterval(() => this.sync(), 5000);
    this.timer.unref();
  }

  private sink(tenant: string, fn: string, t: TriggerConfig): BatchSink {
    const label = triggerLabel(t);
    return async (msgs) => {
      const f = this.o.registry.all().find((x) => x.tenant === tenant && x.name === fn);
      const v = f && this.o.registry.getVersion(tenant, fn, f.latest);
      if (!v) throw new Error(`function ${fn} is gone`);
      const meta: EventMeta = {
        tenant,
        fn,
        kind: "queue",
        method: "POST",
        path: "/",
        host: "localhost",
        headers: [["content-type", "application/json"]],
        sourceIp: "",
        trigger: t.type,
      };
      const { id } = await this.o.async.submit(v, meta, batchPayload(t.type, label, msgs));
      return {
        outcome: () => this.o.outcomes.wait(id),
        cancel: () => this.o.outcomes.forget(id),
      };
    };
  }

  /** Starts, keeps or stops adapters to match every function's latest version. */
  sync(): void {
    if (this.closed) return;
    const want = new Map<string, { tenant: string; fn: string; index: number; t: TriggerConfig }>();
    for (const f of this.o.registry.all()) {
      const v = this.o.registry.getVersion(f.tenant, f.name, f.latest);
      const list = v?.config.triggers ?? [];
      for (const [index, t] of list.entries())
        want.set(`${f.tenant}/${f.name}#${index} ${JSON.stringify(t)}`, {
          tenant: f.tenant,
          fn: f.name,
          index,
          t,
        });
    }
    for (const [key, a] of this.adapters) {
      if (want.has(key)) continue;
      this.adapters.delete(key);
      a.adapter
        .close()
        .catch((err: unknown) => this.o.log(`nimbus: stopping a trigger failed: ${String(err)}`));
    }
    for (const [key, w] of want) {
      if (this.adapters.has(key)) continue;
      const common = {
        fn: w.fn,
        tenant: w.tenant,
        index: w.index,
        sink: this.sink(w.tenant, w.fn, w.t),
        log: this.o.log,
      };
      const adapter: TriggerAdapter =
        w.t.type === "mqtt"
          ? new MqttAdapter({ ...common, trigger: w.t })
          : new NatsAdapter({ ...common, trigger: w.t });
      this.adapters.set(key, { tenant: w.tenant, adapter });
      try {
        adapter.start();
      } catch (err) {
        this.o.log(`nimbus: starting trigger ${triggerLabel(w.t)} of ${w.fn} failed: ${String(err)}`);
      }
    }
  }

  /** Every trigger of a tenant (optionally one function's), by function and index. */
  list(tenant: string, fn?: string): TriggerStatus[] {
    return [...this.adapters.values()]
      .filter((a) => a.tenant === tenant)
      .map((a) => a.adapter.status())
      .filter((s) => fn === undefined || s.function === fn)
      .sort((a, b) => a.function.localeCompare(b.function) || a.index - b.index);
  }

  /** Stops every trigger (unacknowledged broker messages stay with the broker). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    const all = [...this.adapters.values()];
    this.adapters.clear();
    await Promise.allSettled(all.map((a) => a.adapter.close()));
  }
}
