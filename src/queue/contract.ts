/**
 * The contract every Queue implementation passes (hono `common.case.test.ts` style): each
 * implementation's test file calls `runQueueContract` with a factory. Time is a stepped
 * clock passed in, so lease expiry and delays are tested without sleeping; an
 * implementation whose timers run in a server (JetStream's ack wait) runs the same cases on
 * the real clock instead, checking each deadline `slackMs` before and after it.
 */
import assert from "node:assert/strict";
import { afterEach, describe, test as nodeTest, type TestContext } from "node:test";
import { type LeasedMessage, type Queue, QueueFullError, type QueueOptions } from "./types.ts";

/** A clock tests move by hand. */
export interface StepClock {
  now: number;
  (): number;
}

function stepClock(start = 1_800_000_000_000): StepClock {
  const c = (() => c.now) as StepClock;
  c.now = start;
  return c;
}

/** Makes a fresh, empty queue for one test. */
export type QueueFactory = (opts: QueueOptions & { clock: () => number }) => Queue | Promise<Queue>;

/** How an implementation runs the contract. */
export interface QueueContractOptions {
  /**
   * The implementation's timers run on the real clock (a server's): the factory gets
   * `Date.now`, and each deadline is checked `slackMs` before and after it by waiting.
   */
  realTime?: { slackMs: number };
  /** Cases that cannot hold for this implementation: a title fragment → the reason. */
  skip?: Record<string, string>;
}

/** Moves time to just before or after a deadline counted from `mark()`. */
interface Timeline {
  mark(): void;
  /**
   * Moves to just before the deadline; false on the real clock when that moment had already
   * passed (a loaded machine): a "not yet" check would then prove nothing, so it is left out.
   */
  before(ms: number): Promise<boolean>;
  after(ms: number): Promise<void>;
  /**
   * Leases after a deadline passed. On the stepped clock: once. On the real clock: again
   * every 100 ms for up to 5 s until something comes (a loaded server's timer fires late;
   * the "before" checks still prove nothing comes early).
   */
  leaseAfter(q: Queue, queue: string, max: number, leaseMs: number): Promise<LeasedMessage[]>;
  /**
   * Leases just before the deadline `ms` and fails if a message came back before it: only
   * a lease call that returned a message before the deadline proves an early delivery (on a
   * loaded server or cluster the call itself can end past the deadline, and then what it
   * returned is on time). Returns what it leased, for the caller's "after" check.
   */
  notYet(q: Queue, queue: string, ms: number, leaseMs: number): Promise<LeasedMessage[]>;
}

function timeline(clock: StepClock | undefined, slackMs: number): Timeline {
  let base = 0;
  const now = () => (clock ? clock.now : Date.now());
  const to = async (at: number): Promise<boolean> => {
    if (clock) {
      clock.now = at;
      return true;
    }
    if (at < Date.now()) return false;
    await new Promise((r) => setTimeout(r, at - Date.now()));
    return true;
  };
  return {
    mark: () => {
      base = now();
    },
    before: (ms) => to(base + ms - slackMs),
    after: async (ms) => {
      await to(base + ms + slackMs);
    },
    notYet: async (q, queue, ms, leaseMs) => {
      if (!(await to(base + ms - slackMs))) return [];
      const got = await q.lease(queue, 1, leaseMs);
      const ended = now();
      assert.ok(
        got.length === 0 || ended >= base + ms,
        `a message was delivered ${base + ms - ended} ms before its time`,
      );
      return got;
    },
    leaseAfter: async (q, queue, max, leaseMs) => {
      const until = Date.now() + 5000;
      for (;;) {
        const got = await q.lease(queue, max, leaseMs);
        if (got.length > 0 || clock || Date.now() >= until) return got;
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

const b = (s: string) => Buffer.from(s);

/** Runs the contract suite against `make`. */
export function runQueueContract(name: string, make: QueueFactory, how: QueueContractOptions = {}): void {
  describe(`Queue contract: ${name}`, () => {
    const opened: Queue[] = [];
    const open = async (opts: QueueOptions = {}) => {
      const clock = how.realTime ? undefined : stepClock();
      const q = await make({ ...opts, clock: clock ?? Date.now });
      opened.push(q);
      return { q, t: timeline(clock, how.realTime?.slackMs ?? 1) };
    };
    // A failed case leaves its queue open (a connection that reconnects forever): close it.
    afterEach(async () => {
      for (const q of opened.splice(0)) await q.close().catch(() => {});
    });
    const test = (title: string, body: (t: TestContext) => Promise<void>) => {
      const why = Object.entries(how.skip ?? {}).find(([fragment]) => title.includes(fragment))?.[1];
      return nodeTest(title, why ? { skip: why } : {}, body);
    };

    test("enqueue then lease returns the body and meta, oldest first, once", async () => {
      const { q } = await open();
      const [a] = await q.enqueue("q1", [{ body: b("one"), meta: '{"k":1}' }]);
      await q.enqueue("q1", [{ body: b("two") }]);
      await q.enqueue("other", [{ body: b("elsewhere") }]);
      const got = await q.lease("q1", 10, 1000);
      assert.deepEqual(
        got.map((m) => m.body.toString()),
        ["one", "two"],
      );
      assert.equal(got[0]!.id, a!.id);
      assert.equal(got[0]!.meta, '{"k":1}');
      assert.equal(got[0]!.attempts, 1);
      assert.deepEqual(await q.lease("q1", 10, 1000), [], "a leased message is not handed out twice");
      await q.close();
    });

    test("overview: depth by state and the oldest undelivered message per queue (metrics)", async (tc) => {
      const { q } = await open();
      if (!q.overview) {
        tc.skip("this implementation has no overview");
        await q.close();
        return;
      }
      await q.enqueue("a", [{ body: b("1"), id: "a1" }, { body: b("2") }, { body: b("3") }]);
      await q.enqueue("b", [{ body: b("x"), id: "bx" }]);
      await q.lease("a", 1, 60_000);
      const [bx] = await q.lease("b", 1, 60_000);
      await q.nack("bx", bx!.token, 30_000, "later");
      const at = async (id: string) => (await q.get(id))!.enqueuedAt;
      const o = (await q.overview()).sort((x, y) => x.queue.localeCompare(y.queue));
      assert.deepEqual(o, [
        { queue: "a", ready: 2, delayed: 0, leased: 1, dead: 0, oldestAt: await at("a1") },
        { queue: "b", ready: 0, delayed: 1, leased: 0, dead: 0, oldestAt: await at("bx") },
      ]);
      await q.close();
    });

    test("ack ends the message and keeps its result; a stale token does nothing", async () => {
      const { q } = await open();
      await q.enqueue("q", [{ body: b("x"), id: "m1" }]);
      const [m] = await q.lease("q", 1, 1000);
      assert.equal(await q.ack("m1", "wrong-token"), false);
      assert.equal(await q.ack("m1", m!.token, "ok!"), true);
      assert.equal(await q.ack("m1", m!.token), false, "second ack refused");
      const info = await q.get("m1");
      assert.equal(info?.state, "succeeded");
      assert.equal(info?.result, "ok!");
      assert.equal(info?.attempts, 1);
      assert.deepEqual(await q.stats("q"), { ready: 0, delayed: 0, leased: 0, dead: 0, succeeded: 1 });
      await q.close();
    });

    test("an expired lease returns the message; the old holder's ack is refused after re-lease", async () => {
      const { q, t } = await open();
      await q.enqueue("q", [{ body: b("x"), id: "m" }]);
      t.mark();
      const [first] = await q.lease("q", 1, 1000);
      const early = await t.notYet(q, "q", 1000, 1000);
      await t.after(1000);
      const [second] = early.length > 0 ? early : await t.leaseAfter(q, "q", 1, 1000);
      assert.equal(second?.id, "m");
      assert.equal(second?.attempts, 2);
      assert.equal(await q.ack("m", first!.token), false);
      assert.equal(await q.ack("m", second!.token), true);
      await q.close();
    });

    test("extend keeps a lease alive past its first deadline", async () => {
      const { q, t } = await open();
      await q.enqueue("q", [{ body: b("x"), id: "m" }]);
      t.mark();
      const [m] = await q.lease("q", 1, 1000);
      await t.before(1000);
      assert.equal(await q.extend("m", m!.token, 1000), true);
      await t.after(1000);
      assert.deepEqual(await q.lease("q", 1, 1000), []);
      assert.equal(await q.extend("m", "nope", 1000), false);
      await q.close();
    });

    test("nack with a delay hides the message until the delay passes, keeping the error", async () => {
      const { q, t } = await open();
      await q.enqueue("q", [{ body: b("x"), id: "m" }]);
      const [m] = await q.lease("q", 1, 1000);
      t.mark();
      assert.equal(await q.nack("m", m!.token, 2000, "boom"), true);
      assert.equal((await q.stats("q")).delayed, 1);
      const early = await t.notYet(q, "q", 2000, 1000);
      await t.after(2000);
      const [again] = early.length > 0 ? early : await t.leaseAfter(q, "q", 1, 1000);
      assert.equal(again?.attempts, 2);
      assert.equal((await q.get("m"))?.error, "boom");
      await q.close();
    });

    test("nack with uncount gives the attempt back (a throttled delivery never ran)", async () => {
      const { q } = await open();
      await q.enqueue("q", [{ body: b("x"), id: "m" }]);
      const [m] = await q.lease("q", 1, 1000);
      assert.equal(await q.nack("m", m!.token, 0, "throttled", { uncount: true }), true);
      const info = await q.get("m");
      assert.equal(info?.attempts, 0);
      assert.equal(info?.state, "ready");
      const [again] = await q.lease("q", 1, 1000);
      assert.equal(again?.attempts, 1);
      await q.close();
    });

    test("enqueue with a delay", async () => {
      const { q, t } = await open();
      t.mark();
      await q.enqueue("q", [{ body: b("x"), delayMs: 1000 }]);
      const early = await t.notYet(q, "q", 1000, 1000);
      await t.after(1000);
      assert.equal(early.length > 0 ? early.length : (await t.leaseAfter(q, "q", 1, 1000)).length, 1);
      await q.close();
    });

    test("dead-letter, list, redrive (attempts reset) and purge", async () => {
      const { q } = await open();
      await q.enqueue("q", [
        { body: b("a"), id: "a" },
        { body: b("b"), id: "b" },
        { body: b("c"), id: "c" },
      ]);
      const ms = await q.lease("q", 3, 1000);
      for (const m of ms) assert.equal(await q.deadLetter(m.id, m.token, "gave up", "failed"), true);
      const dead = await q.list("q", { state: "dead" });
      assert.deepEqual(dead.map((m) => m.id).sort(), ["a", "b", "c"]);
      assert.equal(dead[0]!.deadReason, "failed");
      assert.equal((await q.body("a"))?.toString(), "a", "a dead message keeps its body");
      assert.equal(await q.redrive("q", ["a"]), 1);
      const [again] = await q.lease("q", 5, 1000);
      assert.equal(again?.id, "a");
      assert.equal(again?.attempts, 1);
      assert.equal(await q.redrive("q"), 2);
      assert.equal((await q.stats("q")).ready, 2);
      const [x] = await q.lease("q", 1, 1000);
      await q.deadLetter(x!.id, x!.token, "too old", "expired");
      assert.equal((await q.get(x!.id))?.deadReason, "expired");
      assert.equal(await q.purge("q", "dead"), 1);
      assert.equal(await q.purge("q", "ready"), 1);
      assert.deepEqual(await q.stats("q"), { ready: 0, delayed: 0, leased: 1, dead: 0, succeeded: 0 });
      await q.close();
    });

    test("dedupKey within the window returns the first id and stores nothing; after it, a new message", async () => {
      const { q, t } = await open({ dedupWindowMs: 3000 });
      t.mark();
      const [first] = await q.enqueue("q", [{ body: b("x"), dedupKey: "k" }]);
      const [dup] = await q.enqueue("q", [{ body: b("y"), dedupKey: "k" }]);
      assert.deepEqual(dup, { id: first!.id, duplicate: true });
      const same = await q.enqueue("q", [
        { body: b("z"), dedupKey: "k2" },
        { body: b("z"), dedupKey: "k2" },
      ]);
      assert.equal(same[0]!.id, same[1]!.id, "duplicates inside one batch collapse too");
      assert.equal((await q.stats("q")).ready, 2);
      const [other] = await q.enqueue("other", [{ body: b("x"), dedupKey: "k" }]);
      assert.equal(other!.duplicate, false, "keys are per queue");
      await t.after(3000);
      const [later] = await q.enqueue("q", [{ body: b("x"), dedupKey: "k" }]);
      assert.equal(later!.duplicate, false);
      assert.notEqual(later!.id, first!.id);
      await q.close();
    });

    test("maxDepth refuses past the bound with QueueFullError, without storing part of it", async () => {
      const { q } = await open({ maxDepth: 3 });
      await q.enqueue("q", [{ body: b("1") }, { body: b("2") }]);
      await assert.rejects(q.enqueue("q", [{ body: b("3") }, { body: b("4") }]), QueueFullError);
      assert.equal((await q.stats("q")).ready, 2, "the refused batch stored nothing");
      await q.enqueue("q", [{ body: b("3") }]);
      await assert.rejects(q.enqueue("q", [{ body: b("4") }]), QueueFullError);
      const [m] = await q.lease("q", 1, 1000);
      await q.ack(m!.id, m!.token);
      await q.enqueue("q", [{ body: b("4") }]);
      await q.enqueue("elsewhere", [{ body: b("1") }]);
      await q.close();
    });

    test("many enqueues in one turn all resolve, each stored", async () => {
      const { q } = await open();
      const ps = [];
      for (let i = 0; i < 500; i++) ps.push(q.enqueue("q", [{ body: b(String(i)) }]));
      const ids = (await Promise.all(ps)).map((r) => r[0]!.id);
      assert.equal(new Set(ids).size, 500);
      assert.equal((await q.stats("q")).ready, 500);
      const got = await q.lease("q", 1000, 1000);
      assert.equal(got.length, 500);
      assert.deepEqual(
        got.map((m) => m.body.toString()),
        Array.from({ length: 500 }, (_, i) => String(i)),
      );
      await q.close();
    });

    test("queuesWithWork names queues with ready or leased messages only", async () => {
      const { q } = await open();
      await q.enqueue("a", [{ body: b("1") }]);
      await q.enqueue("b", [{ body: b("1"), id: "bm" }]);
      const [m] = await q.lease("b", 1, 1000);
      await q.ack("bm", m!.token);
      // A hint for the dispatcher, so eventual on a replicated store: a JetStream work queue
      // removes an acked message on every replica a moment after the ack returns.
      let got = await q.queuesWithWork();
      for (let i = 0; how.realTime && i < 50 && got.join() !== "a"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        got = await q.queuesWithWork();
      }
      assert.deepEqual(got, ["a"]);
      await q.close();
    });
  });
}
