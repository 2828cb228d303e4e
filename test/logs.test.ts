/**
 * Function logs: filters (level, text, invocation id, since) on reads and on the live
 * stream; the stream is Server-Sent Events with ids, resumable with Last-Event-ID, with
 * heartbeats; `nimbus logs --follow` reads it. Real server, real function, real clients.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readSse, type SseEvent } from "../src/cli/sse.ts";
import { cleanup, ROOT, sleep, startTestServer, type TestServer } from "./helpers.ts";

/** Reads SSE events from the logs stream until `until` says stop (or 20 s pass). */
async function follow(
  s: TestServer,
  query: string,
  until: (events: SseEvent[], raw: string) => boolean,
  headers: Record<string, string> = {},
): Promise<{ events: SseEvent[]; contentType: string | null }> {
  const ac = new AbortController();
  const res = await fetch(`${s.url}/api/v1/functions/logger/logs?follow=1&${query}`, {
    headers: { authorization: `Bearer ${s.adminKey}`, ...headers },
    signal: ac.signal,
  });
  assert.equal(res.status, 200);
  const events: SseEvent[] = [];
  const timer = setTimeout(() => ac.abort(), 20_000);
  try {
    for await (const ev of readSse(res.body as unknown as AsyncIterable<Uint8Array>)) {
      events.push(ev);
      if (until(events, "")) break;
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { events, contentType: res.headers.get("content-type") };
}

async function call(s: TestServer, query: string): Promise<string> {
  const res = await fetch(`${s.url}/fn/logger/?${query}`);
  await res.text();
  return res.headers.get("x-nimbus-invocation-id")!;
}

describe("function logs", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    const d = await s.deploy("logger", "logger.ts");
    assert.equal(d.status, 200, JSON.stringify(d.body));
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("filters by level, text, invocation id and since (API and CLI)", async () => {
    const t0 = Date.now();
    await call(s, "n=2&level=info&text=alpha");
    const warnId = await call(s, "n=1&level=warn&text=Bravo_100%25");
    await call(s, "n=1&level=error&text=charlie");
    const byLevel = await s.api("GET", "/api/v1/functions/logger/logs?level=warn&limit=100");
    assert.deepEqual(
      byLevel.body.lines.map((l: { msg: string }) => l.msg),
      ["Bravo_100% 0", "charlie 0"],
    );
    // The text is matched literally and case-insensitively (no LIKE wildcards).
    const byText = await s.api("GET", `/api/v1/functions/logger/logs?q=${encodeURIComponent("bravo_100%")}`);
    assert.deepEqual(
      byText.body.lines.map((l: { msg: string }) => l.msg),
      ["Bravo_100% 0"],
    );
    const wild = await s.api("GET", `/api/v1/functions/logger/logs?q=${encodeURIComponent("%")}`);
    assert.deepEqual(
      wild.body.lines.map((l: { msg: string }) => l.msg),
      ["Bravo_100% 0"],
    );
    const byId = await s.cli(["logs", "logger", "--invocation", warnId, "--json"]);
    assert.equal(byId.code, 0, byId.stderr);
    assert.deepEqual(
      JSON.parse(byId.stdout).lines.map((l: { invocationId: string }) => l.invocationId),
      [warnId],
    );
    const cli = await s.cli(["logs", "logger", "--level", "error", "--grep", "CHARLIE", "--since", "10m"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /ERROR .* charlie 0/);
    assert.doesNotMatch(cli.stdout, /alpha|Bravo/);
    const since = await s.api("GET", `/api/v1/functions/logger/logs?since=${Date.now() + 60_000}`);
    assert.equal(since.body.lines.length, 0);
    const sinceStart = await s.api("GET", `/api/v1/functions/logger/logs?since=${t0}&q=alpha`);
    assert.equal(sinceStart.body.lines.length, 2);
    const bad = await s.cli(["logs", "logger", "--since", "yesterday-ish"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /NIMBUS_BAD_REQUEST: --since must be/);
    const badLevel = await s.api("GET", "/api/v1/functions/logger/logs?level=loud");
    assert.equal(badLevel.status, 400);
    assert.equal(badLevel.body.error.code, "NIMBUS_BAD_REQUEST");
  });

  it("follow=1 is an SSE stream: backlog, then new lines with ids, filtered, with heartbeats", async () => {
    const seen = follow(
      s,
      "limit=1&level=warn&q=delta&heartbeat=1",
      (ev) => ev.filter((e) => e.event === "log").length >= 2,
    );
    await sleep(1500);
    await call(s, "n=2&level=info&text=delta"); // filtered out by level
    await call(s, "n=2&level=warn&text=delta");
    await call(s, "n=1&level=error&text=echo"); // filtered out by text
    const r = await seen;
    assert.equal(r.contentType, "text/event-stream; charset=utf-8");
    const logs = r.events.filter((e) => e.event === "log").map((e) => ({ id: e.id, ...JSON.parse(e.data) }));
    // The backlog (limit=1) is empty for this filter, then the two live warn lines.
    assert.deepEqual(
      logs.map((l) => l.msg),
      ["delta 0", "delta 1"],
    );
    for (const l of logs) assert.equal(String(l.seq), l.id);
    assert.ok(Number(logs[1].id) > Number(logs[0].id));
  });

  it("Last-Event-ID resumes after the last line seen, with nothing lost or repeated", async () => {
    await call(s, "n=3&text=foxtrot");
    const first = await follow(
      s,
      "q=foxtrot&limit=100",
      (ev) => ev.filter((e) => e.event === "log").length >= 3,
    );
    const ids = first.events.filter((e) => e.event === "log").map((e) => e.id!);
    assert.equal(ids.length, 3);
    // Disconnected after the second line; meanwhile the function logs on.
    await call(s, "n=2&text=foxtrot-later");
    const resumed = await follow(
      s,
      "q=foxtrot&limit=100",
      (ev) => ev.filter((e) => e.event === "log").length >= 3,
      { "last-event-id": ids[1]! },
    );
    assert.deepEqual(
      resumed.events.filter((e) => e.event === "log").map((e) => JSON.parse(e.data).msg),
      ["foxtrot 2", "foxtrot-later 0", "foxtrot-later 1"],
    );
  });

  it("heartbeats keep an idle stream alive", async () => {
    const ac = new AbortController();
    const res = await fetch(`${s.url}/api/v1/functions/logger/logs?follow=1&heartbeat=1&q=never-logged`, {
      headers: { authorization: `Bearer ${s.adminKey}` },
      signal: ac.signal,
    });
    let raw = "";
    const dec = new TextDecoder();
    const t = setTimeout(() => ac.abort(), 10_000);
    try {
      for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
        raw += dec.decode(c);
        if ((raw.match(/: heartbeat/g) ?? []).length >= 2) break;
      }
    } catch {}
    clearTimeout(t);
    ac.abort();
    assert.ok((raw.match(/: heartbeat/g) ?? []).length >= 2, raw);
  });

  it("nimbus logs --follow prints new lines as they come", async () => {
    const child = spawn(
      process.execPath,
      [join(ROOT, "src/cli/main.ts"), "logs", "logger", "--follow", "-n", "1", "--grep", "golf"],
      { env: { ...process.env, NIMBUS_URL: s.url, NIMBUS_HOME: s.dataDir, NIMBUS_TOKEN: "" } },
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    try {
      await sleep(1500);
      const id = await call(s, "n=1&level=warn&text=golf");
      for (let i = 0; i < 100 && !out.includes("golf 0"); i++) await sleep(100);
      assert.match(out, new RegExp(`WARN\\s+v1 ${id}\\s+golf 0`));
    } finally {
      child.kill();
    }
  });

  it("nimbus top --once --json lists the busiest functions with req/s, p99, errors and instances", async () => {
    for (let i = 0; i < 4; i++) await call(s, "n=0");
    await call(s, "n=0&fail=1");
    const r = await s.cli(["top", "--once", "--json", "--minutes", "1"]);
    assert.equal(r.code, 0, r.stderr);
    const top = JSON.parse(r.stdout);
    const row = top.functions.find((f: { name: string }) => f.name === "logger");
    assert.ok(row, r.stdout);
    assert.ok(row.requests >= 5, r.stdout);
    assert.ok(row.errors >= 1);
    assert.ok(row.rps > 0);
    assert.equal(typeof row.p99, "number");
    assert.ok(row.instances >= 1);
    const human = await s.cli(["top", "--once"]);
    assert.match(human.stdout, /FUNCTION\s+REQ\/S\s+P50 MS\s+P99 MS\s+ERRORS/);
    assert.match(human.stdout, /\nlogger\s+\d/);
  });
});
