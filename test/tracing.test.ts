import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningServer, startServer } from "../src/server.ts";
import { cleanup, deployIsolateSource, sleep } from "./helpers.ts";

/** A span as the OTLP receiver got it. */
interface Got {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
}

function attr(s: Got, key: string): unknown {
  const a = s.attributes.find((x) => x.key === key);
  return a ? Object.values(a.value)[0] : undefined;
}

describe("traces (OTLP/HTTP to a receiver in the test)", () => {
  let dir: string;
  let s: RunningServer;
  let receiver: Server;
  const spans: Got[] = [];
  const contentTypes = new Set<string>();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nimbus-trace-"));
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        contentTypes.add(`${req.method} ${req.url} ${req.headers["content-type"]}`);
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      otlpEndpoint: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
      // The function calls the second one through this server's gateway, on loopback.
      egressAllow: ["127.0.0.1/32"],
    });
    const b = await deployIsolateSource(
      s,
      dir,
      "second",
      `export default {
        async fetch(request: Request, _env: unknown, ctx: { traceparent?: string }) {
          return Response.json({ header: request.headers.get("traceparent"), ctx: ctx.traceparent });
        },
      };`,
      { timeout: "120s" },
    );
    assert.equal(b.status, 200, JSON.stringify(b.body));
    const a = await deployIsolateSource(
      s,
      dir,
      "first",
      `export default {
        async fetch(request: Request, _env: unknown, ctx: { traceparent?: string }) {
          // No traceparent of its own: the platform's fetch bridge adds one naming the fetch span.
          const r = await fetch("${s.url}/fn/second");
          return Response.json({ header: request.headers.get("traceparent"), ctx: ctx.traceparent, second: await r.json() });
        },
      };`,
      // A generous timeout: the machine running the tests is loaded.
      { network: { default: "allow", allowPrivate: true }, timeout: "120s" },
    );
    assert.equal(a.status, 200, JSON.stringify(a.body));
  });
  after(async () => {
    await s?.close();
    receiver?.close();
    cleanup(dir);
  });

  /** Waits until the receiver holds `n` spans of `traceId`. */
  async function trace(traceId: string, n: number): Promise<Got[]> {
    for (let i = 0; i < 200; i++) {
      const got = spans.filter((x) => x.traceId === traceId);
      if (got.length >= n) return got;
      await sleep(50);
    }
    assert.fail(`trace ${traceId}: ${spans.filter((x) => x.traceId === traceId).length} spans, wanted ${n}`);
  }

  function one(list: Got[], name: string, fn: string): Got {
    const hits = list.filter((x) => x.name === name && attr(x, "faas.name") === fn);
    assert.equal(hits.length, 1, `${name} of ${fn}: ${hits.length}`);
    return hits[0]!;
  }

  it("cold then warm: span trees, caller context continued, function's own fetch continues the trace", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    for (const round of ["cold", "warm"] as const) {
      const caller = round === "cold" ? callerSpan : "00f067aa0ba902b8";
      const tid = round === "cold" ? traceId : "4bf92f3577b34da6a3ce929d0e0e4737";
      const res = await fetch(`${s.url}/fn/first`, { headers: { traceparent: `00-${tid}-${caller}-01` } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as {
        header: string;
        ctx: string;
        second: { header: string; ctx: string };
      };
      // Cold: gateway, cold_start, sandbox_start, module_load, handler per function; warm:
      // gateway, handler; plus first's fetch span.
      const got = await trace(tid, round === "cold" ? 11 : 5);
      await sleep(100);
      assert.equal(
        spans.filter((x) => x.traceId === tid).length,
        round === "cold" ? 11 : 5,
        "no extra spans",
      );
      const aGw = one(got, "nimbus.gateway", "first");
      const aH = got.find((x) => x.name === "nimbus.handler" && x.parentSpanId === aGw.spanId);
      assert.ok(aH, "first: handler under the gateway span");
      assert.equal(aGw.parentSpanId, caller, "the caller's traceparent is the parent");
      assert.equal(aGw.kind, 2);
      assert.equal(attr(aGw, "faas.coldstart"), round === "cold");
      assert.equal(attr(aGw, "http.response.status_code"), "200");
      // The function saw its handler span as traceparent, in the header and in ctx.
      assert.equal(body.header, `00-${tid}-${aH.spanId}-01`);
      assert.equal(body.ctx, body.header);
      // The function's own fetch: a client span under its handler, with http attributes.
      const f = got.filter((x) => x.name === "fetch 127.0.0.1");
      assert.equal(f.length, 1, "one fetch span");
      const fetchSpan = f[0]!;
      assert.equal(fetchSpan.parentSpanId, aH.spanId, "the fetch span is a child of the handler span");
      assert.equal(fetchSpan.kind, 3, "client");
      assert.equal(attr(fetchSpan, "http.request.method"), "GET");
      assert.equal(attr(fetchSpan, "server.address"), "127.0.0.1");
      assert.equal(attr(fetchSpan, "http.response.status_code"), "200");
      assert.equal(attr(fetchSpan, "nimbus.traceparent_propagated"), true);
      assert.ok(BigInt(fetchSpan.startTimeUnixNano) >= BigInt(aH.startTimeUnixNano));
      assert.ok(BigInt(fetchSpan.endTimeUnixNano) <= BigInt(aH.endTimeUnixNano));
      // The second function, called by the first through the gateway, continues the trace
      // under the fetch span (the bridge set the traceparent).
      const bGw = one(got, "nimbus.gateway", "second");
      assert.equal(bGw.parentSpanId, fetchSpan.spanId, "second's gateway span is a child of first's fetch");
      const bH = got.find((x) => x.name === "nimbus.handler" && x.parentSpanId === bGw.spanId);
      assert.ok(bH);
      assert.equal(body.second.header, `00-${tid}-${bH.spanId}-01`);
      assert.equal(body.second.ctx, body.second.header);
      const colds = got.filter((x) => x.name === "nimbus.cold_start");
      if (round === "warm") assert.equal(colds.length, 0);
      else {
        assert.deepEqual(colds.map((c) => c.parentSpanId).sort(), [aGw.spanId, bGw.spanId].sort());
        for (const c of colds) {
          const kids = got.filter((x) => x.parentSpanId === c.spanId).map((x) => x.name);
          assert.deepEqual(kids.sort(), ["nimbus.module_load", "nimbus.sandbox_start"]);
          for (const k of got.filter((x) => x.parentSpanId === c.spanId)) {
            assert.ok(BigInt(k.startTimeUnixNano) >= BigInt(c.startTimeUnixNano));
            assert.ok(BigInt(k.endTimeUnixNano) <= BigInt(c.endTimeUnixNano));
          }
        }
      }
    }
    assert.ok([...contentTypes].every((c) => c.startsWith("POST /v1/traces application/json")));
  });

  it("a function that sets its own traceparent keeps it; the fetch span is still recorded", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "own",
      `export default {
        async fetch(_request: Request, _env: unknown, ctx: { traceparent?: string }) {
          const r = await fetch("${s.url}/fn/second", { headers: { TraceParent: ctx.traceparent ?? "" } });
          return new Response(await r.text());
        },
      };`,
      { network: { default: "allow", allowPrivate: true }, timeout: "120s" },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tid = "7bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${s.url}/fn/own`, { headers: { traceparent: `00-${tid}-00f067aa0ba902bb-01` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    // own: gateway, cold_start (+2), handler, fetch; second (warm): gateway, handler.
    const got = await trace(tid, 8);
    const h = got.find(
      (x) => x.name === "nimbus.handler" && x.parentSpanId === one(got, "nimbus.gateway", "own").spanId,
    );
    assert.ok(h);
    const f = got.find((x) => x.name === "fetch 127.0.0.1");
    assert.ok(f);
    assert.equal(f.parentSpanId, h.spanId);
    assert.equal(attr(f, "nimbus.traceparent_propagated"), false);
    assert.equal(
      one(got, "nimbus.gateway", "second").parentSpanId,
      h.spanId,
      "the function's own context wins",
    );
  });

  it("odd fetches (IPv6 literal refused by policy, a non-standard method) get spans and never break the host", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "odd",
      `export default {
        async fetch() {
          const out: unknown[] = [];
          for (const [url, method] of [["http://[::1]:9/", "GET"], ["${s.url}/fn/second", "M-SEARCH"]]) {
            try {
              const r = await fetch(url, { method });
              out.push(r.status);
              await r.arrayBuffer();
            } catch (e) {
              out.push(String((e as Error).message));
            }
          }
          return Response.json(out);
        },
      };`,
      { network: { default: "allow", allowPrivate: true }, timeout: "120s" },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tid = "9bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${s.url}/fn/odd`, { headers: { traceparent: `00-${tid}-00f067aa0ba902bd-01` } });
    assert.equal(res.status, 200);
    const out = (await res.json()) as unknown[];
    assert.equal(typeof out[0], "string", "the ::1 fetch is refused by the server's ceiling");
    const got = await trace(tid, 6);
    const v6 = got.find((x) => x.name === "fetch ::1");
    assert.ok(v6, got.map((x) => x.name).join(", "));
    assert.equal(
      (v6 as unknown as { status: { code: number } }).status.code,
      2,
      "failed fetch: error status",
    );
    const other = got.find((x) => x.name === "fetch 127.0.0.1");
    assert.ok(other);
    assert.equal(attr(other, "http.request.method"), "_OTHER");
    // The isolate host is still there: a second call works.
    const again = await fetch(`${s.url}/fn/odd`);
    assert.equal(again.status, 200);
    await again.arrayBuffer();
  });

  it("no traceparent: a new trace is created and handed to the function", async () => {
    const res = await fetch(`${s.url}/fn/second`);
    const body = (await res.json()) as { header: string };
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(body.header);
    assert.ok(m, body.header);
    const got = await trace(m[1]!, 2);
    const gw = one(got, "nimbus.gateway", "second");
    assert.equal(gw.parentSpanId, undefined, "a root span");
  });

  it("an async call: the delivery continues the caller's trace, with a queue-wait span", async () => {
    const tid = "5bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${s.url}/fn/second`, {
      headers: { traceparent: `00-${tid}-00f067aa0ba902b9-01`, "x-nimbus-invocation-type": "event" },
    });
    assert.equal(res.status, 202);
    await res.arrayBuffer();
    const got = await trace(tid, 3);
    const root = one(got, "nimbus.delivery", "second");
    assert.equal(root.parentSpanId, "00f067aa0ba902b9");
    assert.equal(attr(root, "faas.trigger"), "async");
    const wait = got.filter((x) => x.name === "nimbus.queue_wait");
    assert.equal(wait.length, 1);
    assert.equal(wait[0]!.parentSpanId, root.spanId);
    assert.equal(wait[0]!.startTimeUnixNano, root.startTimeUnixNano, "the delivery span starts at enqueue");
    assert.ok(got.some((x) => x.name === "nimbus.handler" && x.parentSpanId === root.spanId));
  });

  it("a Lambda handler on the process executor gets the context as context.traceparent and the header", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "lam",
      `export const handler = async (event: { headers: Record<string, string> }, context: { traceparent?: string }) => ({
        statusCode: 200,
        body: JSON.stringify({ header: event.headers.traceparent, ctx: context.traceparent }),
      });`,
      { executor: "process", timeout: "120s" },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tid = "6bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${s.url}/fn/lam`, { headers: { traceparent: `00-${tid}-00f067aa0ba902ba-01` } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { header: string; ctx: string };
    const got = await trace(tid, 5);
    const h = got.find((x) => x.name === "nimbus.handler");
    assert.ok(h);
    assert.equal(body.ctx, `00-${tid}-${h.spanId}-01`);
    assert.equal(body.header, body.ctx);
    // A process cold start has both phases too.
    assert.ok(got.some((x) => x.name === "nimbus.sandbox_start"));
    assert.ok(got.some((x) => x.name === "nimbus.module_load"));
  });

  it("process executor: the function's egress connection is a client span under its handler", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "pfetch",
      `export default {
        async fetch(_request: Request, _env: unknown, ctx: { traceparent?: string }) {
          const r = await fetch("${s.url}/fn/second", { headers: { traceparent: ctx.traceparent ?? "" } });
          return new Response(await r.text());
        },
      };`,
      { executor: "process", network: { default: "allow", allowPrivate: true }, timeout: "120s" },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tid = "8bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${s.url}/fn/pfetch`, {
      headers: { traceparent: `00-${tid}-00f067aa0ba902bc-01` },
    });
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    // pfetch: gateway, cold_start (+2), handler, connect; second (warm): gateway, handler.
    const got = await trace(tid, 8);
    const gw = one(got, "nimbus.gateway", "pfetch");
    const h = got.find((x) => x.name === "nimbus.handler" && x.parentSpanId === gw.spanId);
    assert.ok(h);
    const c = got.filter((x) => x.name === "connect 127.0.0.1");
    assert.equal(c.length, 1, got.map((x) => x.name).join(", "));
    assert.equal(c[0]!.parentSpanId, h.spanId);
    assert.equal(c[0]!.kind, 3);
    assert.equal(attr(c[0]!, "server.port"), String(new URL(s.url).port));
    assert.ok(
      BigInt(c[0]!.endTimeUnixNano) <= BigInt(h.endTimeUnixNano),
      "ended with the invocation at the latest",
    );
    // The function forwarded its context: second continues the trace under pfetch's handler.
    assert.equal(one(got, "nimbus.gateway", "second").parentSpanId, h.spanId);
  });
});
