import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, startTestServer, type TestServer } from "./helpers.ts";

describe("the process sandbox", () => {
  let s: TestServer;
  let otherCode: string;
  before(async () => {
    s = await startTestServer({ env: { NIMBUS_SECRET_OF_THE_PLATFORM: "s3cret" } });
    assert.equal((await s.deploy("spy", "behaviours.ts", { env: { OWN_VAR: "mine" } })).status, 200);
    assert.equal((await s.deploy("victim", "echo.ts")).status, 200);
    const dir = join(s.dataDir, "code/default/victim");
    otherCode = join(dir, readdirSync(dir)[0]!, "index.mjs");
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("reports which protections are active", async () => {
    const status = (await s.api("GET", "/api/v1/status")).body;
    assert.equal(typeof status.sandbox.bwrap, "boolean");
    const info = (await s.api("GET", "/api/v1/functions/spy")).body;
    assert.equal(info.sandbox.bwrap, status.sandbox.bwrap);
    assert.deepEqual(info.sandbox.protectionsOff, status.sandbox.off);
    if (!status.sandbox.bwrap) assert.match(s.stdout(), /WARNING, protection off: bubblewrap/);
  });

  const read = async (path: string) => {
    const res = await fetch(`${s.url}/fn/spy/read?path=${encodeURIComponent(path)}`);
    return { status: res.status, body: await res.text() };
  };

  it("a function cannot read /etc/shadow, the data directory, or another function's code", async (t) => {
    const status = (await s.api("GET", "/api/v1/status")).body;
    if (!status.sandbox.bwrap) {
      if (process.env.CI === "true") assert.fail("CI must run the sandbox: install bubblewrap");
      t.skip("bubblewrap is not available on this machine");
      return;
    }
    for (const path of [
      "/etc/shadow",
      join(s.dataDir, "admin.key"),
      join(s.dataDir, "nimbus.db"),
      otherCode,
    ]) {
      const r = await read(path);
      assert.equal(r.status, 403, `${path} must not be readable, got: ${r.body.slice(0, 80)}`);
      assert.match(r.body, /ENOENT|EACCES|EPERM/);
    }
    // Its own code is there, read-only.
    const own = await read("/fn/index.mjs");
    assert.equal(own.status, 200);
  });

  it("a function sees only its own environment variables", async () => {
    const res = await fetch(`${s.url}/fn/spy/env`);
    const env = (await res.json()) as Record<string, string>;
    assert.equal(env.OWN_VAR, "mine");
    assert.equal(env.NIMBUS_SECRET_OF_THE_PLATFORM, undefined);
    assert.equal(env.PATH, undefined);
    const platformKeys = Object.keys(env).filter((k) => k !== "OWN_VAR");
    assert.deepEqual(platformKeys, [], `unexpected variables: ${platformKeys}`);
  });

  it("a function with auth: key requires an API key on its URL", async () => {
    assert.equal((await s.deploy("private", "echo.ts", { auth: "key" })).status, 200);
    const anon = await fetch(`${s.url}/fn/private`);
    assert.equal(anon.status, 401);
    assert.equal(((await anon.json()) as any).error.code, "NIMBUS_UNAUTHORIZED");
    const keyed = await fetch(`${s.url}/fn/private`, {
      method: "POST",
      body: "in",
      headers: { authorization: `Bearer ${s.adminKey}` },
    });
    assert.equal(keyed.status, 200);
    assert.equal(await keyed.text(), "in");
  });
});

describe("without the sandbox", () => {
  it("still runs, and says at start and in info exactly which protections are off", async () => {
    const s = await startTestServer({ args: ["--no-sandbox"] });
    try {
      assert.match(s.stdout(), /sandbox:\s+bubblewrap OFF; cgroups OFF/);
      assert.match(s.stdout(), /WARNING, protection off: bubblewrap disabled/);
      assert.match(s.stdout(), /WARNING, protection off: cgroup memory limit/);
      assert.equal((await s.deploy("open", "echo.ts")).status, 200);
      const res = await fetch(`${s.url}/fn/open`, { method: "POST", body: "works" });
      assert.equal(await res.text(), "works");
      const info = await s.cli(["info", "open"]);
      assert.match(info.stdout, /sandbox:\s+bubblewrap OFF, cgroups OFF/);
      assert.match(info.stdout, /WARNING, protection off: cgroup CPU limit/);
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  });
});
