import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkListen, checkPrivileges, isLoopbackHost, sandboxMode, sandboxWarning } from "./mode.ts";
import type { Protections } from "./sandbox.ts";

const base: Protections = {
  bwrap: false,
  bwrapPath: null,
  cgroups: null,
  memoryLimit: false,
  cpuLimit: false,
  pidsLimit: false,
  freezer: false,
  cpuAccounting: false,
  seccomp: false,
  runAs: { uid: 65534, gid: 65534 },
  setprivPath: "/usr/bin/setpriv",
  sandboxed: false,
  off: [],
};

describe("fail-closed mode (pure)", () => {
  it("no sandbox → development, loopback only; the insecure flag is the only way past", () => {
    assert.equal(sandboxMode(base, false), "development");
    assert.equal(sandboxMode(base, true), "insecure");
    assert.equal(sandboxMode({ ...base, sandboxed: true }, true), "sandboxed");
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
      assert.equal(isLoopbackHost(h), true, h);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) assert.equal(isLoopbackHost(h), false, h);
    checkListen("development", "127.0.0.1");
    assert.throws(() => checkListen("development", "0.0.0.0"), /--insecure-no-sandbox/);
    checkListen("insecure", "0.0.0.0");
    checkListen("sandboxed", "0.0.0.0");
    assert.match(sandboxWarning("development") ?? "", /apt-get install bubblewrap/);
    assert.equal(sandboxWarning("sandboxed"), undefined);
  });

  it("a root server that cannot drop instances to an unprivileged uid refuses to start", () => {
    assert.throws(() => checkPrivileges({ ...base, runAs: null }, false, true), /setpriv/);
    checkPrivileges({ ...base, runAs: null }, true, true);
    checkPrivileges({ ...base, runAs: null }, false, false);
    checkPrivileges(base, false, true);
  });
});
