/**
 * Issue 8, point 5: a cold start never waits behind another function's cold start longer
 * than it must. Function A's module takes a long time to load (a top-level await); while
 * A's first instance is still loading, a request for function B — also with no instance —
 * is served. Behaviour only: B answers 200 while A's request is still unanswered and A's
 * instance is still starting; no timing is asserted.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { cleanup, deployIsolateSource, sleep, startTestServer, type TestServer } from "./helpers.ts";

/**
 * A module that loads at once until `slowFrom` (ms since the epoch), and afterwards takes
 * long at load: the deploy check (before `slowFrom`) passes quickly, the first real cold
 * start (after it) is slow. In a process a top-level await (20 s); in an isolate, whose
 * host does not wait for a module's top-level await (a separate issue), a busy loop of the
 * same length, bounded by the load timeout.
 */
function slowLoader(slowFrom: number, executor: "process" | "isolate"): string {
  const wait =
    executor === "process"
      ? "await new Promise((r) => setTimeout(r, 20_000));"
      : "{ const until = Date.now() + 20_000; while (Date.now() < until); }";
  return `if (Date.now() > ${slowFrom}) ${wait}
export default { fetch: () => new Response("A loaded") };`;
}

const QUICK = `export default { fetch: () => new Response("B served") };`;

async function starting(s: TestServer, name: string): Promise<number> {
  const r = await s.api("GET", `/api/v1/functions/${name}`);
  return r.body.instances.starting as number;
}

for (const executor of ["process", "isolate"] as const) {
  describe(`cold starts of different functions do not queue behind each other (${executor})`, () => {
    it("B serves while A's first instance is still loading its module", async () => {
      // No pre-started runtimes: both cold starts spawn fresh runtimes (process executor).
      // A long queue wait: on a loaded machine B's fresh runtime may take seconds to start, and
      // what is asserted is that B is served, not how fast.
      const s = await startTestServer({ args: ["--prewarm", "0", "--queue-wait", "60000"] });
      const dir = mkdtempSync(join(tmpdir(), "nimbus-fairness-"));
      const aborts = new AbortController();
      try {
        const slowFrom = Date.now() + 8000;
        const a = await deployIsolateSource(s, dir, "slow-a", slowLoader(slowFrom, executor), {
          executor,
          timeout: "60s",
        });
        assert.equal(a.status, 200, JSON.stringify(a.body));
        const b = await deployIsolateSource(s, dir, "quick-b", QUICK, { executor });
        assert.equal(b.status, 200, JSON.stringify(b.body));
        // Let the deploy checks' instances go, then wait until A's module turns slow.
        await sleep(Math.max(0, slowFrom - Date.now()) + 200);

        let aSettled = false;
        const aReq = fetch(`${s.url}/fn/slow-a`, { signal: aborts.signal }).then(
          (r) => {
            aSettled = true;
            return r.status;
          },
          () => {
            aSettled = true;
            return 0;
          },
        );
        // A's cold start is under way (its instance is starting) before B is asked for.
        for (let i = 0; i < 200 && (await starting(s, "slow-a")) === 0; i++) await sleep(50);
        assert.equal(await starting(s, "slow-a"), 1, "A's instance is starting");

        const rb = await fetch(`${s.url}/fn/quick-b`);
        assert.equal(rb.status, 200);
        assert.equal(await rb.text(), "B served");
        assert.equal(aSettled, false, "A's request is still waiting for its module to load");
        assert.equal(await starting(s, "slow-a"), 1, "A's instance is still loading");
        aborts.abort();
        await aReq;
      } finally {
        aborts.abort();
        await s.stop();
        cleanup(s.dataDir);
        cleanup(dir);
      }
    });
  });
}
