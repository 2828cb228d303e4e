import assert from "node:assert/strict";
import { test } from "node:test";
import { InvocationTrace, MAX_OUTBOUND } from "./invocation-trace.ts";
import { OtlpExporter, type SpanData, Tracer } from "./tracing.ts";

/** An exporter that keeps what it is given (nothing is sent: the interval never fires in the test). */
class Keep extends OtlpExporter {
  readonly got: SpanData[] = [];
  override push(span: SpanData): void {
    this.got.push(span);
  }
}

test("attack: a function opens 500 outbound calls in one invocation → at most MAX_OUTBOUND spans, the rest counted", async () => {
  const exporter = new Keep({ endpoint: "http://127.0.0.1:9", intervalMs: 3_600_000 });
  const tracer = new Tracer(exporter);
  const t = new InvocationTrace(tracer, { headers: [], trigger: "http", method: "GET" }, "f", 1, "inv-1");
  t.acquired(false, undefined);
  let made = 0;
  for (let i = 0; i < 500; i++) if (t.call({ host: "127.0.0.1", port: 80, method: "GET" })) made++;
  assert.equal(made, MAX_OUTBOUND);
  t.end(200, null);
  const handler = exporter.got.find((s) => s.name === "nimbus.handler")!;
  const fetches = exporter.got.filter((s) => s.name === "fetch 127.0.0.1");
  // Spans still open when the invocation ends are ended with it, under the handler.
  assert.equal(fetches.length, MAX_OUTBOUND);
  for (const f of fetches) {
    assert.equal(f.parentSpanId, handler.spanId);
    assert.ok(f.endMs <= handler.endMs);
  }
  assert.equal(handler.attributes["nimbus.outbound.dropped"], 500 - MAX_OUTBOUND);
  await tracer.close();
});

test("an outbound span reported with times outside the handler is clamped into it", async () => {
  const exporter = new Keep({ endpoint: "http://127.0.0.1:9", intervalMs: 3_600_000 });
  const tracer = new Tracer(exporter);
  const t = new InvocationTrace(tracer, { headers: [], trigger: "http", method: "GET" }, "f", 1, "inv-2");
  assert.equal(t.call({ host: "a", port: 1 }), undefined, "no handler span yet");
  t.acquired(false, undefined);
  const s = t.call({ host: "a", port: 1, startMs: 0, spanId: "00f067aa0ba902b7" });
  assert.ok(s);
  s.end(0);
  t.end(200, null);
  const handler = exporter.got.find((x) => x.name === "nimbus.handler")!;
  const c = exporter.got.find((x) => x.name === "connect a")!;
  assert.equal(c.spanId, "00f067aa0ba902b7");
  assert.ok(c.startMs >= handler.startMs);
  assert.ok(c.endMs >= c.startMs);
  await tracer.close();
});
