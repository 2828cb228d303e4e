/**
 * Destinations: when an async invocation ends, a CloudEvents 1.0 report goes to the
 * function's `destinations.onSuccess` / `onFailure`: another function (`fn:<name>`, as a
 * durable async event of its own, retried by that function's rules) or a webhook URL
 * (POSTed as structured-mode `application/cloudevents+json`, a few tries, through the
 * server's egress policy so a tenant cannot aim it at the host's private network).
 */

import { randomUUID } from "node:crypto";
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import { Agent, fetch } from "undici";
import type { LeasedMessage } from "../queue/types.ts";
import { Egress } from "../runtime/egress-policy.ts";
import type { VersionRecord } from "../store/types.ts";
import type { AsyncInvocations, EventMeta } from "./async.ts";
import { type CloudEvent, STRUCTURED_TYPE } from "./cloudevents.ts";
import type { AttemptOutcome } from "./responder.ts";

/** How an invocation ended. */
export type Outcome = "succeeded" | "failed" | "expired";

/** Builds the CloudEvent reporting an outcome (pure). */
export function outcomeEvent(
  meta: Pick<EventMeta, "tenant" | "fn">,
  m: Pick<LeasedMessage, "id" | "attempts" | "enqueuedAt">,
  outcome: Outcome,
  now: number,
  error?: string,
  out?: AttemptOutcome,
): CloudEvent {
  return {
    specversion: "1.0",
    id: randomUUID(),
    source: `nimbus://${meta.tenant}/functions/${meta.fn}`,
    type: `dev.nimbus.invocation.${outcome}`,
    subject: m.id,
    time: new Date(now).toISOString(),
    datacontenttype: "application/json",
    data: {
      invocationId: m.id,
      function: meta.fn,
      outcome,
      attempts: m.attempts,
      enqueuedAt: new Date(m.enqueuedAt).toISOString(),
      ...(error === undefined ? {} : { error }),
      ...(out
        ? { response: { status: out.status, body: out.body.toString("utf8"), bodyBytes: out.bodyBytes } }
        : {}),
    },
  };
}

/** Sends destination reports. */
export class Destinations {
  private readonly async: () => AsyncInvocations;
  private readonly resolve: (tenant: string, fn: string) => VersionRecord;
  private readonly log: (msg: string) => void;
  private readonly agent: Agent;
  private readonly egress: Egress;
  private inflight = 0;

  /**
   * @param egress the server's egress ceiling (webhooks to private addresses need an operator grant).
   */
  constructor(o: {
    async: () => AsyncInvocations;
    resolve: (tenant: string, fn: string) => VersionRecord;
    log: (msg: string) => void;
    egress?: Egress;
  }) {
    this.async = o.async;
    this.resolve = o.resolve;
    this.log = o.log;
    const egress = o.egress ?? new Egress({ default: "allow", allowPrivate: false });
    this.egress = egress;
    this.agent = new Agent({
      connect: { lookup: checkedLookup(egress) as unknown as LookupFunction, timeout: 5000 },
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  }

  /** Reports one outcome to the function's destination for it, if any (never throws). */
  report(
    meta: EventMeta,
    m: LeasedMessage,
    outcome: Outcome,
    error?: string,
    out?: AttemptOutcome,
    v?: VersionRecord,
  ): void {
    const d = v?.config.destinations;
    const target = outcome === "succeeded" ? d?.onSuccess : d?.onFailure;
    if (!target) return;
    // A report never reports itself: a destination function's own outcomes go nowhere further
    // when it was invoked as a destination (no loops between two functions' destinations).
    if (meta.trigger === "destination") return;
    const event = outcomeEvent(meta, m, outcome, Date.now(), error, out);
    this.send(meta.tenant, target, event).catch((err: unknown) =>
      this.log(`nimbus: destination ${target} of ${meta.fn} failed: ${String(err)}`),
    );
  }

  private async send(tenant: string, target: string, event: CloudEvent): Promise<void> {
    if (target.startsWith("fn:")) {
      const fn = target.slice(3);
      const v = this.resolve(tenant, fn);
      await this.async().submit(
        v,
        {
          tenant,
          fn,
          kind: "event",
          method: "POST",
          path: "/",
          host: "localhost",
          headers: [["content-type", STRUCTURED_TYPE]],
          sourceIp: "",
          trigger: "destination",
        },
        Buffer.from(JSON.stringify(event)),
      );
      return;
    }
    // An address literal never goes through the resolver: check it here (names are checked
    // at connect time, every address they resolve to).
    const host = new URL(target).hostname.replace(/^\[|\]$/g, "");
    if (isIP(host)) {
      const why = this.egress.check(host, host);
      if (why) throw new Error(`webhook refused: ${why}`);
    }
    // Webhooks: bounded in flight, three tries with a short backoff.
    if (this.inflight >= 100) throw new Error("too many webhook reports in flight; this one is dropped");
    this.inflight++;
    try {
      let last: unknown;
      for (let i = 0; i < 3; i++) {
        try {
          const res = await fetch(target, {
            method: "POST",
            headers: { "content-type": STRUCTURED_TYPE },
            body: JSON.stringify(event),
            dispatcher: this.agent,
            redirect: "manual",
          });
          await res.body?.cancel();
          if (res.status < 500) return;
          last = new Error(`status ${res.status}`);
        } catch (err) {
          last = err;
        }
        await new Promise((r) => setTimeout(r, 200 * 2 ** i));
      }
      throw last;
    } finally {
      this.inflight--;
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/**
 * A `lookup` for net/tls connect that resolves the name and returns only the addresses the
 * policy permits, so a name that resolves to a private address is refused at connect time.
 */
function checkedLookup(egress: Egress) {
  return (
    hostname: string,
    options: LookupOptions,
    cb: (err: NodeJS.ErrnoException | null, address?: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addrs) => {
      if (err) return cb(err);
      const ok = addrs.filter((a) => egress.check(hostname, a.address) === undefined);
      if (ok.length === 0) {
        const why = addrs[0] ? egress.check(hostname, addrs[0].address) : "no address";
        const e: NodeJS.ErrnoException = new Error(`egress refused: ${why}`);
        e.code = "EACCES";
        return cb(e);
      }
      if (options.all) cb(null, ok);
      else cb(null, ok[0]!.address, ok[0]!.family);
    });
  };
}
