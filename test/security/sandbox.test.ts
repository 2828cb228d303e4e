/**
 * The process sandbox fails closed: with it, a function sees nothing of the host; without
 * it (simulated: NIMBUS_BWRAP points at no binary), functions run only in loopback-only
 * development mode, as an unprivileged uid that cannot read the data directory or admin key.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { detectProtections } from "../../src/executors/process/sandbox.ts";
import { cleanup, ROOT, startTestServer, type TestServer } from "../helpers.ts";

/** Host processes descending from `root` whose command line contains `needle`. */
function descendants(root: number, needle: string): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const out: number[] = [];
  for (const pid of parent.keys()) {
    let p: number | undefined = pid;
    for (let i = 0; i < 64 && p && p !== root; i++) p = parent.get(p);
    if (p !== root) continue;
    try {
      // The runtime itself (argv[0] is the sandbox's node), not a wrapper that is still
      // being set up (the shell that joins the cgroups runs as root before setpriv drops).
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[0] === "/nimbus/node/node" && argv.some((a) => a.includes(needle))) out.push(pid);
    } catch {}
  }
  return out;
}

function hostUid(pid: number): number {
  const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]);
}

const QUEUE = ["--queue-wait", "120000"];

/** A native program (what a hostile tenant could bring) that tries denied system calls. */
const PROBE_C = `#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
static void say(const char *name, long r) { printf("%s=%s\\n", name, r >= 0 ? "ok" : strerror(errno)); }
int main(void) {
  errno = 0; say("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
  errno = 0; say("keyctl", syscall(SYS_keyctl, 0, -3, 0));
  errno = 0; say("unshare", unshare(CLONE_NEWNS));
  errno = 0; say("mount", mount("none", "/tmp", "tmpfs", 0, 0));
  errno = 0; say("bpf", syscall(SYS_bpf, 0, 0, 0));
  errno = 0; say("io_uring_setup", syscall(425, 1, 0));
  return 0;
}
`;

/** Compiles the probe with the host's C compiler; undefined when there is none. */
function compileProbe(): Buffer | undefined {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-probe-"));
  try {
    writeFileSync(join(dir, "probe.c"), PROBE_C);
    const r = spawnSync("cc", ["-O1", "-o", join(dir, "probe"), join(dir, "probe.c")], { stdio: "ignore" });
    return r.status === 0 ? readFileSync(join(dir, "probe")) : undefined;
  } finally {
    cleanup(dir);
  }
}

const SANDBOX = detectProtections().sandboxed;
if (!SANDBOX && process.env.CI === "true") throw new Error("CI must run the sandbox: install bubblewrap");

describe("sandboxed (bubblewrap + cgroups)", {
  skip: SANDBOX ? false : "bubblewrap or cgroups are not available here",
}, () => {
  let s: TestServer;
  let leaked = "";
  const call = async (path: string) => (await fetch(`${s.url}/fn/attacker${path}`)).text();
  const neighbourOk = async () => assert.equal(await (await fetch(`${s.url}/fn/neighbour/ok`)).text(), "ok");

  before(async () => {
    s = await startTestServer({ args: QUEUE, leakFd: true });
    assert.equal((await s.api("GET", "/api/v1/health")).body.sandbox.mode, "sandboxed");
    leaked = readlinkSync(`/proc/${s.proc.pid}/fd/9`);
    for (const n of ["attacker", "neighbour"]) assert.equal((await s.deploy(n, "attacker.ts")).status, 200);
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("attack: function reads admin.key, /etc/shadow or the data dir → not there", async () => {
    for (const path of ["/etc/shadow", join(s.dataDir, "admin.key"), join(s.dataDir, "nimbus.db")]) {
      assert.match(await call(`/read?path=${encodeURIComponent(path)}`), /^denied: ENOENT/, path);
    }
    assert.match(await call(`/ls?path=${encodeURIComponent(s.dataDir)}`), /^denied: ENOENT/);
    assert.match(await call("/read?path=/fn/index.mjs"), /^read: /, "its own code is there");
    await neighbourOk();
  });

  it("attack: sandbox uid 1000 is host root → it maps to the unprivileged uid 65534", async () => {
    const ids = JSON.parse(await call("/ids"));
    assert.equal(ids.uid, 1000);
    const pids = descendants(s.proc.pid!, "/nimbus/runtime/shim.mjs");
    assert.ok(pids.length > 0, "found the instances' processes on the host");
    for (const pid of pids) {
      let uid: number;
      try {
        uid = hostUid(pid);
      } catch {
        continue; // exited since it was listed
      }
      assert.equal(uid, 65534, `pid ${pid} runs as host uid 65534`);
    }
    await neighbourOk();
  });

  it("attack: function looks for inherited fds, host paths in /proc/1/cmdline or mountinfo → none", async () => {
    const fds = JSON.parse(await call("/fds")) as [string, string][];
    assert.ok(
      fds.every(([, target]) => target !== leaked),
      `the server's inherited ${leaked} (fd 9) must not reach the sandbox: ${JSON.stringify(fds)}`,
    );
    const ids = JSON.parse(await call("/ids"));
    for (const hostPath of [ROOT, s.dataDir]) {
      assert.ok(!ids.cmdline1.includes(hostPath), `/proc/1/cmdline names ${hostPath}: ${ids.cmdline1}`);
      assert.ok(!ids.mountinfo.includes(hostPath), `mountinfo names ${hostPath}`);
    }
    await neighbourOk();
  });

  it("attack: function runs a native program calling ptrace/keyctl/unshare/mount/bpf/io_uring → EPERM", async (t) => {
    const status = (await s.api("GET", "/api/v1/status")).body;
    assert.equal(status.sandbox.seccomp, true, "the host takes the seccomp filter");
    const probe = compileProbe();
    if (!probe) {
      t.skip("no C compiler here to build the native probe");
      return;
    }
    const res = await fetch(`${s.url}/fn/attacker/exec`, { method: "POST", body: new Uint8Array(probe) });
    const r = await res.json();
    assert.equal(r.status, 0, JSON.stringify(r));
    for (const call of ["ptrace", "keyctl", "unshare", "mount", "bpf", "io_uring_setup"]) {
      assert.match(r.stdout, new RegExp(`^${call}=Operation not permitted$`, "m"), r.stdout);
    }
    await neighbourOk();
  });

  it("attack: function spawns a shell or unshare → nothing to run", async () => {
    for (const cmd of ["/bin/sh", "/usr/bin/unshare", "/usr/bin/bwrap"]) {
      const r = JSON.parse(await call(`/spawn?cmd=${encodeURIComponent(cmd)}`));
      assert.match(String(r.error), /ENOENT/, cmd);
    }
    await neighbourOk();
  });
});

describe("without bubblewrap (simulated: NIMBUS_BWRAP=/nonexistent)", () => {
  const NO_BWRAP = { NIMBUS_BWRAP: "/nonexistent/bwrap" };

  it("attack: unsandboxed function reads admin.key, /etc/shadow or the data dir → permission denied", async () => {
    const s = await startTestServer({ args: QUEUE, env: NO_BWRAP });
    try {
      assert.match(s.stdout(), /mode:\s+development/);
      assert.match(s.stdout(), /LOCAL DEVELOPMENT MODE .*apt-get install bubblewrap/);
      for (const n of ["attacker", "neighbour"]) {
        const d = await s.deploy(n, "attacker.ts");
        assert.equal(d.status, 200);
        assert.match(d.body.warning, /NOT sandboxed.*apt-get install bubblewrap/);
      }
      const call = async (p: string) => (await fetch(`${s.url}/fn/attacker${p}`)).text();
      for (const path of ["/etc/shadow", join(s.dataDir, "admin.key"), join(s.dataDir, "nimbus.db")]) {
        assert.match(await call(`/read?path=${encodeURIComponent(path)}`), /^denied: EACCES/, path);
      }
      assert.match(await call(`/ls?path=${encodeURIComponent(s.dataDir)}`), /^denied: EACCES/);
      const id = JSON.parse(await call(`/spawn?cmd=/usr/bin/id&args=-u`));
      assert.equal(id.stdout.trim(), "65534", "instances run as nobody, not root");
      // The control API is still refused at the egress proxy (best effort without a namespace).
      assert.match(await call(`/fetch?url=${encodeURIComponent(`${s.url}/api/v1/health`)}`), /^refused: /);
      assert.equal(await (await fetch(`${s.url}/fn/neighbour/ok`)).text(), "ok");
      // Said in info and health too.
      const info = await s.cli(["info", "attacker"]);
      assert.match(info.stdout, /sandbox mode:\s+development/);
      assert.match(info.stdout, /WARNING: LOCAL DEVELOPMENT MODE/);
      const deploy = await s.cli(["deploy", join(ROOT, "test/fixtures/echo.ts")]);
      assert.equal(deploy.code, 0, deploy.stderr);
      assert.match(deploy.stderr, /WARNING: LOCAL DEVELOPMENT MODE/);
      const health = (await s.api("GET", "/api/v1/health")).body;
      assert.equal(health.sandbox.mode, "development");
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  });

  it("attack: operator binds 0.0.0.0 without the sandbox → refused unless --insecure-no-sandbox", async () => {
    await assert.rejects(
      startTestServer({ args: ["--host", "0.0.0.0"], env: NO_BWRAP }),
      /NIMBUS_SANDBOX_REQUIRED: Refusing to listen on 0\.0\.0\.0/,
    );
    const s = await startTestServer({ args: ["--host", "0.0.0.0", "--insecure-no-sandbox"], env: NO_BWRAP });
    try {
      assert.match(s.stdout(), /mode:\s+insecure/);
      assert.match(s.stdout(), /WARNING: INSECURE \(--insecure-no-sandbox\)/);
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  });

  it("NIMBUS_SANDBOX=off is honoured: sandbox off (even with bwrap installed), said loudly", async () => {
    await assert.rejects(
      startTestServer({ args: ["--host", "0.0.0.0", "--no-sandbox"] }),
      /NIMBUS_SANDBOX_REQUIRED/,
    );
    const s = await startTestServer({ args: ["--host", "0.0.0.0"], env: { NIMBUS_SANDBOX: "off" } });
    try {
      const status = (await s.api("GET", "/api/v1/status")).body;
      assert.equal(status.sandbox.bwrap, false);
      assert.equal(status.sandbox.mode, "insecure");
      assert.match(s.stdout(), /WARNING: INSECURE/);
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  });
});
