/**
 * Issue 11: metrics and traces take input from callers (paths, headers, traceparent) and from
 * tenants (function names, versions). No caller may create metric series (a Prometheus
 * blow-up is an outage), and no malformed trace header may crash or steer the platform.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Metrics } from "../../src/observability/metrics.ts";
import { OtlpExporter, parseTraceparent, type SpanData } from "../../src/observability/tracing.ts";
import { type RunningServer, startServer } from "../../src/server.ts";
import type { InvocationRecord } from "../../src/store/types.ts";
import { parseExposition } from "../prometheus.ts";
import { cleanup, deployIsolateSource } from "../helpers.ts";

function rec(fn: string, version: number, extra: Partial<InvocationRecord> = {}): InvocationRecord {
  return {
    id: "x",
    tenant: "default",
    fn,
    version,
    trigger: "http",
    start: Date.now(),
    durationMs: 3,
    billedMs: 3,
    memoryMB: 128,
    gbSeconds: 0.0004,
    cpuMs: 1,
    coldStart: false,
    status: 200,
    errorCode: null,
    firstByteMs: 2,
    ...extra,
  };
}

/** Distinct label values of `label` across the samples of `name`. */
function labelValues(text: string, name: string, label: string): Set<string> {
  return new Set(
    parseExposition(text)
      .filter((s) => s.name === name)
      .map((s) => s.labels[label]!)
      .filter((v) => v !== undefined),
  );
}

test("attack: a tenant deploying many functions and versions, odd triggers and codes → labels stay within the documented caps", async () => {
  const m = new Metrics({ maxFunctions: 10, maxVersions: 3, defaultMetrics: false });
  try {
    for (let f = 0; f < 50; f++) m.observeInvocation(rec(`fn-${f}`, 1));
    for (let v = 1; v <= 100; v++) m.observeInvocation(rec("fn-0", v));
    m.observeInvocation(rec("fn-0", 5));
    m.observeInvocation(rec("fn-1", 1, { trigger: "x".repeat(1000), errorCode: "EVIL_CODE", status: 999 }));
    const text = await m.render();
    const fns = labelValues(text, "nimbus_invocations_total", "function");
    assert.equal(fns.size, 11, "10 names and _other");
    assert.ok(fns.has("_other"));
    const versions = new Set(
      parseExposition(text)
        .filter((s) => s.name === "nimbus_invocations_total" && s.labels.function === "fn-0")
        .map((s) => s.labels.version),
    );
    assert.deepEqual([...versions].sort(), ["100", "98", "99", "old"].sort());
    assert.deepEqual([...labelValues(text, "nimbus_invocations_total", "trigger")].sort(), ["http", "other"]);
    assert.deepEqual([...labelValues(text, "nimbus_invocations_total", "status")].sort(), ["2xx", "error"]);
    assert.deepEqual([...labelValues(text, "nimbus_invocation_errors_total", "code")], ["other"]);
  } finally {
    m.close();
  }
});

test("attack: malformed traceparent values → refused by the parser (a new trace), never a throw", () => {
  const bad = [
    "",
    "garbage",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    `00-${"a".repeat(100_000)}`,
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u0000",
  ];
  for (const h of bad) assert.equal(parseTraceparent(h), undefined, JSON.stringify(h.slice(0, 80)));
  assert.deepEqual(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    sampled: true,
  });
});

test("attack: a collector that fails every export while spans pour in → queue stays bounded, every lost span counted", async () => {
  let posts = 0;
  const failing = createServer((req, res) => {
    posts++;
    req.resume();
    req.on("end", () => res.writeHead(500).end());
  });
  await new Promise<void>((r) => failing.listen(0, "127.0.0.1", r));
  let counted = 0;
  const ex = new OtlpExporter({
    endpoint: `http://127.0.0.1:${(failing.address() as AddressInfo).port}`,
    maxQueue: 10,
    maxBatch: 5,
    intervalMs: 60_000,
    onDrop: (n) => {
      counted += n;
    },
  });
  const span = (i: number): SpanData => ({
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: i.toString(16).padStart(16, "0"),
    parentSpanId: undefined,
    name: "s",
    kind: 1,
    startMs: Date.now(),
    endMs: Date.now(),
    attributes: {},
    status: { code: 0 },
  });
  try {
    for (let i = 1; i <= 1000; i++) ex.push(span(i));
    await ex.close();
    assert.equal(ex.exported, 0);
    assert.equal(ex.dropped, 1000, "every span is either queued and failed, or refused at the bound");
    assert.equal(counted, 1000);
    assert.ok(posts >= 1 && posts <= 3, `a failing collector is not retried in a loop (${posts} posts)`);
  } finally {
    failing.close();
  }
});

describe("a running server under attack", () => {
  let dir: string;
  let s: RunningServer;
  let receiver: Server;
  let received = 0;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "nimbus-metrics-sec-"));
    receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        received++;
        res.end("{}");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      otlpEndpoint: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/v1/traces`,
    });
    const r = await deployIsolateSource(
      s,
      dir,
      "target",
      `export default { fetch: (r: Request) => new Response(r.headers.get("traceparent") ?? "") };`,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
  after(async () => {
    await s?.close();
    receiver?.close();
    cleanup(dir);
  });

  test("attack: 120 requests with random function names, versions, paths, queries and headers → no new metric series", async () => {
    const warm = await fetch(`${s.url}/fn/target`);
    await warm.arrayBuffer();
    for (const path of ["/fn/ghost", "/fn/target@9"]) await (await fetch(`${s.url}${path}`)).arrayBuffer();
    const seriesOf = (text: string) =>
      new Set(
        parseExposition(text)
          .filter(
            (x) =>
              x.name.startsWith("nimbus_") &&
              !x.name.startsWith("nimbus_process_") &&
              !x.name.startsWith("nimbus_nodejs_"),
          )
          .map((x) => `${x.name}${JSON.stringify(x.labels)}`),
      );
    const before = seriesOf(await (await fetch(`${s.url}/metrics`)).text());
    const marks: string[] = [];
    for (let i = 0; i < 40; i++) {
      const mark = `atk${i}x${Math.random().toString(36).slice(2, 8)}`;
      marks.push(mark);
      const reqs = [`/fn/${mark}`, `/fn/target@${100 + i}`, `/fn/target/${mark}?${mark}=${mark}`];
      for (const p of reqs) {
        const res = await fetch(`${s.url}${p}`, {
          headers: {
            "x-nimbus-trigger": mark,
            "x-nimbus-version": mark,
            traceparent: `00-${mark}`,
            "x-forwarded-for": mark,
          },
        });
        await res.arrayBuffer();
      }
    }
    const text = await (await fetch(`${s.url}/metrics`)).text();
    for (const mark of marks) assert.ok(!text.includes(mark), `${mark} became a label value`);
    const after = seriesOf(text);
    const added = [...after].filter((x) => !before.has(x));
    assert.deepEqual(added, [], "no new series");
    const m = parseExposition(text);
    const ok = m.find(
      (x) =>
        x.name === "nimbus_invocations_total" && x.labels.function === "target" && x.labels.status === "2xx",
    );
    assert.equal(
      ok?.value,
      41,
      "the 40 attack calls on a real path were counted under the function's own series",
    );
  });

  test("attack: malformed or duplicated traceparent headers on live requests → served, each with a fresh valid trace", async () => {
    const addr = new URL(s.url);
    // A raw request, so that a header can be sent twice.
    const send = (headers: [string, string][]) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const sock = connect(Number(addr.port), addr.hostname);
        let raw = "";
        sock.setEncoding("utf8").on("data", (c: string) => {
          raw += c;
        });
        sock.on("end", () => {
          const [head, ...rest] = raw.split("\r\n\r\n");
          resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? "")?.[1]), body: rest.join("\r\n\r\n") });
        });
        sock.on("error", reject);
        const lines = headers.map(([k, v]) => `${k}: ${v}\r\n`).join("");
        sock.write(`GET /fn/target HTTP/1.1\r\nhost: ${addr.host}\r\nconnection: close\r\n${lines}\r\n`);
      });
    const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const cases: [string, string][][] = [
      [["traceparent", "00-zz-zz-01"]],
      [["traceparent", `00-${"f".repeat(8000)}`]],
      [["traceparent", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]],
      [
        ["traceparent", valid],
        ["traceparent", valid],
      ],
    ];
    for (const headers of cases) {
      const r = await send(headers);
      assert.equal(r.status, 200, `${JSON.stringify(headers).slice(0, 80)}: ${r.body.slice(0, 200)}`);
      const m = /00-([0-9a-f]{32})-([0-9a-f]{16})-01/.exec(r.body);
      assert.ok(m, `the function got a valid traceparent, not ${r.body.slice(0, 80)}`);
      assert.notEqual(m[1], "4bf92f3577b34da6a3ce929d0e0e4736", "a new trace");
    }
    // Spans still reach the collector.
    for (let i = 0; i < 60 && received === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(received > 0);
  });
});
