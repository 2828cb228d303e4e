/**
 * A SIGKILLed platform leaves no spawner behind: it notices it was orphaned, sends its
 * runtimes SIGKILL and exits, so the server's stdout/stderr pipes close (a process holding
 * them open made whoever waited on the server — a supervisor, a test — wait forever).
 * Runtimes are not checked here: an idle one is frozen (cgroup freezer) and a frozen process
 * takes SIGKILL only once thawed, which nobody does after the platform is gone (known gap).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanup, FIXTURES, startTestServer, type TestServer } from "./helpers.ts";

/** Pids whose parent is `ppid`, with their command lines. */
function childrenOf(ppid: number): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      // Field 4 (ppid) follows the command name in parentheses, which may hold spaces.
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent !== ppid) continue;
      out.push({ pid: Number(d), cmd: readFileSync(`/proc/${d}/cmdline`, "utf8").replaceAll("\0", " ") });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitUntil(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("a SIGKILLed server", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.stop("SIGKILL");
    cleanup(s.dataDir);
  });

  test("leaves no spawner behind, and its output pipes close", async () => {
    const d = await s.deploy("hello", join(FIXTURES, "echo.ts"));
    assert.ok(d.status < 300, JSON.stringify(d.body));
    const r = await fetch(`${s.url}/fn/hello`);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const spawner = childrenOf(s.proc.pid!).find((c) => c.cmd.includes("spawner"));
    assert.ok(spawner, "the server runs a spawner");
    assert.ok(childrenOf(spawner.pid).length > 0, "the spawner runs runtimes");

    const closed = new Promise<void>((res) => s.proc.stdout!.once("close", () => res()));
    s.proc.kill("SIGKILL");
    await waitUntil("the spawner exits", () => !alive(spawner.pid));
    await Promise.race([
      closed,
      new Promise((_, rej) => setTimeout(() => rej(new Error("the server's stdout never closed")), 20_000)),
    ]);
  });
});
