import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, FIXTURES, ROOT, sleep, startTestServer, type TestServer } from "./helpers.ts";

describe("CLI, records and persistence", () => {
  let s: TestServer;
  let work: string;
  before(async () => {
    s = await startTestServer();
    work = mkdtempSync(join(tmpdir(), "nimbus-cli-"));
    const d = await s.cli(["deploy", join(FIXTURES, "echo.ts"), "--name", "hello"]);
    assert.equal(d.code, 0, d.stderr);
    const l = await s.cli(["deploy", join(FIXTURES, "lambda-echo.ts"), "--name", "lam"]);
    assert.equal(l.code, 0, l.stderr);
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
    cleanup(work);
  });

  it("the admin key is created with mode 0600 and the control API needs it", async () => {
    assert.equal(statSync(join(s.dataDir, "admin.key")).mode & 0o777, 0o600);
    const r = await s.cli(["ls"]);
    assert.equal(r.code, 0, r.stderr);
    const bad = await new Promise<{ code: number | null; stderr: string }>((res) => {
      const c = spawn(process.execPath, [join(ROOT, "src/cli/main.ts"), "ls"], {
        env: { ...process.env, NIMBUS_URL: s.url, NIMBUS_TOKEN: "wrong" },
      });
      let stderr = "";
      c.stderr.on("data", (d) => {
        stderr += d;
      });
      c.on("exit", (code) => res({ code, stderr }));
    });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /NIMBUS_UNAUTHORIZED/);
  });

  it("invoke takes --data, --data @file and stdin, and prints the response", async () => {
    const a = await s.cli(["invoke", "hello", "--data", '{"a":1}']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, '{"a":1}');
    const file = join(work, "payload.json");
    writeFileSync(file, '{"from":"file"}');
    const b = await s.cli(["invoke", "hello", "--data", `@${file}`]);
    assert.equal(b.stdout, '{"from":"file"}');
    const c = await s.cli(["invoke", "hello"], "from stdin");
    assert.equal(c.stdout, "from stdin");
    const j = JSON.parse((await s.cli(["invoke", "lam", "--path", "/plain", "--json"])).stdout);
    assert.equal(j.status, 200);
    assert.deepEqual(JSON.parse(j.body), { plain: true, n: 1 });
    const missing = await s.cli(["invoke", "nope"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NIMBUS_FN_NOT_FOUND/);
  });

  it("ls, info and versions print data, and JSON with --json", async () => {
    const ls = await s.cli(["ls"]);
    assert.match(ls.stdout, /hello\s+1\s+process/);
    const lsj = JSON.parse((await s.cli(["ls", "--json"])).stdout);
    assert.deepEqual(lsj.functions.map((f: any) => f.name).sort(), ["hello", "lam"]);
    const info = await s.cli(["info", "hello"]);
    assert.match(info.stdout, /memory:\s+128 MB/);
    assert.match(info.stdout, /instances:/);
    const infoj = JSON.parse((await s.cli(["info", "hello", "--json"])).stdout);
    assert.equal(infoj.latest, 1);
    assert.equal(typeof infoj.instances.idle, "number");
    const v = JSON.parse((await s.cli(["versions", "hello", "--json"])).stdout);
    assert.equal(v.versions[0].version, 1);
  });

  it("every invocation is recorded with metering fields", async () => {
    const res = await fetch(`${s.url}/fn/hello`, { method: "POST", body: "x" });
    const id = res.headers.get("x-nimbus-invocation-id");
    await res.text();
    const list = (await s.api("GET", "/api/v1/functions/hello/invocations?limit=100")).body.invocations;
    const rec = list.find((r: any) => r.id === id);
    assert.ok(rec, "the invocation is recorded");
    assert.equal(rec.fn, "hello");
    assert.equal(rec.version, 1);
    assert.equal(rec.trigger, "http");
    assert.equal(rec.status, 200);
    assert.equal(rec.errorCode, null);
    assert.equal(rec.memoryMB, 128);
    assert.equal(rec.billedMs, Math.max(1, Math.ceil(rec.durationMs)));
    assert.ok(Math.abs(rec.gbSeconds - (128 / 1024) * (rec.billedMs / 1000)) < 1e-12);
    assert.ok(rec.cpuMs > 0, "CPU time is measured");
    assert.equal(typeof rec.coldStart, "boolean");
    assert.ok(rec.start <= Date.now());
  });

  it("logs shows the function's console output with invocation ids; --follow streams new lines", async () => {
    const res = await fetch(`${s.url}/fn/hello/logged`);
    const id = res.headers.get("x-nimbus-invocation-id")!;
    await res.text();
    const logs = await s.cli(["logs", "hello"]);
    assert.match(logs.stdout, new RegExp(`INFO\\s+v1 ${id}\\s+echo GET /logged`));
    const j = JSON.parse((await s.cli(["logs", "hello", "--json", "--invocation", id])).stdout);
    assert.equal(j.lines.length, 1);
    assert.equal(j.lines[0].level, "info");

    const follow = spawn(
      process.execPath,
      [join(ROOT, "src/cli/main.ts"), "logs", "hello", "--follow", "-n", "1"],
      {
        env: { ...process.env, NIMBUS_URL: s.url, NIMBUS_HOME: s.dataDir },
      },
    );
    let out = "";
    follow.stdout.on("data", (d) => {
      out += d;
    });
    await sleep(1000);
    await (await fetch(`${s.url}/fn/hello/followed-line`)).text();
    for (let i = 0; i < 50 && !out.includes("/followed-line"); i++) await sleep(100);
    follow.kill();
    assert.match(out, /echo GET \/followed-line/);
  });

  it("usage prints requests, GB-s, CPU ms and cost at the Lambda list price", async () => {
    const r = await s.cli(["usage", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const u = JSON.parse(r.stdout);
    assert.equal(u.pricePlan.perRequest, 0.0000002);
    assert.equal(u.pricePlan.perGbSecond, 0.0000166667);
    const hello = u.functions.find((f: any) => f.fn === "hello");
    assert.ok(hello.requests >= 4);
    assert.ok(Math.abs(hello.cost - (hello.requests * 0.0000002 + hello.gbSeconds * 0.0000166667)) < 1e-12);
    const human = await s.cli(["usage", "--since", "1h"]);
    assert.match(human.stdout, /FUNCTION\s+REQUESTS\s+ERRORS\s+REFUSED\s+GB-S\s+CPU MS/);
  });

  it("restarting the server keeps every function, version and log", async () => {
    await s.cli(["deploy", join(FIXTURES, "fn-default.ts"), "--name", "hello"]);
    const logsBefore = JSON.parse((await s.cli(["logs", "hello", "--json", "-n", "1000"])).stdout).lines
      .length;
    assert.equal(await s.stop(), 0, "SIGTERM stops the server cleanly");
    s = await startTestServer({ dataDir: s.dataDir });
    const v = JSON.parse((await s.cli(["versions", "hello", "--json"])).stdout);
    assert.deepEqual(
      v.versions.map((x: any) => x.version),
      [1, 2],
    );
    const logsAfter = JSON.parse((await s.cli(["logs", "hello", "--json", "-n", "1000"])).stdout).lines
      .length;
    assert.equal(logsAfter, logsBefore);
    assert.deepEqual(await (await fetch(`${s.url}/fn/hello`)).json(), { shape: "function", method: "GET" });
    assert.equal(await (await fetch(`${s.url}/fn/hello@1`, { method: "POST", body: "v1" })).text(), "v1");
    assert.equal((await fetch(`${s.url}/fn/lam/plain`)).status, 200);
  });
});
