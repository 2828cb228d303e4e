import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AutoscalerConfig,
  type AutoscalerState,
  DEFAULT_AUTOSCALER,
  type Decision,
  decide,
  initialState,
  observe,
} from "./autoscaler.ts";

// Concurrency 10 at utilization 0.7: each instance is sized for 7 requests in flight.
function config(over: Partial<AutoscalerConfig> = {}): AutoscalerConfig {
  return {
    ...DEFAULT_AUTOSCALER,
    targetConcurrency: 10,
    minInstances: 0,
    maxInstances: 50,
    idleTimeoutMs: 120_000,
    ...over,
  };
}

const S = 1000;

interface Run {
  /** The decision taken at second `s`. */
  at(s: number): Decision;
  /** Decisions taken from second `from` to `to`, both included. */
  desired(from: number, to: number): number[];
  all: { s: number; decision: Decision }[];
  state: AutoscalerState;
}

/**
 * Steps the clock one second at a time from `from` to `until`: observes `load(s)` each second,
 * decides every `tickS` seconds (at s > 0), and makes the decision ready at once (the next
 * decision sees `ready` = the previous `desired`).
 */
function simulate(
  cfg: AutoscalerConfig,
  load: (s: number) => number,
  o: { until: number; ready: number; from?: number; tickS?: number; state?: AutoscalerState },
): Run {
  const tickS = o.tickS ?? 2;
  let state = o.state ?? initialState();
  let ready = o.ready;
  const all: { s: number; decision: Decision }[] = [];
  for (let s = o.from ?? 1; s <= o.until; s++) {
    state = observe(state, { t: s * S, concurrency: load(s) }, cfg);
    if (s > 0 && s % tickS === 0) {
      const r = decide(state, s * S, ready, cfg);
      state = r.state;
      ready = r.decision.desired;
      all.push({ s, decision: r.decision });
    }
  }
  const at = (s: number) => {
    const d = all.find((x) => x.s === s);
    assert.ok(d, `no decision at ${s} s`);
    return d.decision;
  };
  const desired = (from: number, to: number) =>
    all.filter((x) => x.s >= from && x.s <= to).map((x) => x.decision.desired);
  return { at, desired, all, state };
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object") {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

describe("DEFAULT_AUTOSCALER", () => {
  it("holds Knative's KPA defaults", () => {
    assert.deepEqual(DEFAULT_AUTOSCALER, {
      targetUtilization: 0.7,
      stableWindowMs: 60_000,
      panicWindowMs: 6_000,
      panicThreshold: 2,
      maxScaleUpRate: 1000,
      maxScaleDownRate: 2,
      scaleDownDelayMs: 0,
    });
  });
});

describe("observe", () => {
  it("returns a new state, prunes samples outside the stable window and keeps them in order", () => {
    const cfg = config();
    const s0 = deepFreeze(initialState());
    const s1 = deepFreeze(observe(s0, { t: 1 * S, concurrency: 0 }, cfg));
    assert.deepEqual(s0.samples, []);
    assert.equal(s1.lastActive, 1 * S, "the idle clock starts with the first sample");
    const s2 = deepFreeze(observe(s1, { t: 30 * S, concurrency: 4 }, cfg));
    const s3 = deepFreeze(observe(s2, { t: 20 * S, concurrency: 2 }, cfg)); // out of order
    assert.deepEqual(
      s3.samples.map((x) => x.t),
      [1 * S, 20 * S, 30 * S],
    );
    assert.equal(s3.lastActive, 30 * S, "an older sample does not move lastActive back");
    // Window (1 s, 61 s]: the sample at 1 s leaves.
    const s4 = observe(s3, { t: 61 * S, concurrency: 0 }, cfg);
    assert.deepEqual(
      s4.samples.map((x) => x.t),
      [20 * S, 30 * S, 61 * S],
    );
    assert.equal(s4.lastActive, 30 * S, "a zero sample is not activity");
    assert.equal(s3.samples.length, 3, "the given state is unchanged");
  });

  it("rejects a negative or non-finite sample", () => {
    assert.throws(() => observe(initialState(), { t: 0, concurrency: -1 }, config()), RangeError);
    assert.throws(() => observe(initialState(), { t: Number.NaN, concurrency: 1 }, config()), RangeError);
  });
});

describe("decide", () => {
  it("does not mutate the state it is given", () => {
    const cfg = config();
    let state = initialState();
    for (let s = 1; s <= 10; s++) state = observe(state, { t: s * S, concurrency: 35 }, cfg);
    deepFreeze(state);
    const { decision, state: next } = decide(state, 10 * S, 0, cfg);
    assert.equal(decision.desired, 5);
    assert.notEqual(next, state);
    assert.equal(state.panicUntil, null);
    assert.deepEqual(state.desiredHistory, []);
  });

  it("sizes by ceil(average / (concurrency x utilization)) without floating-point overshoot", () => {
    // 15 in flight at 7 per instance → ceil(2.14) = 3.
    let state = observe(initialState(), { t: 0, concurrency: 15 }, config());
    assert.equal(decide(state, 0, 3, config()).decision.desired, 3);
    // Concurrency 3: 3 * 0.7 = 2.0999999999999996, and 21 / that = 10.000000000000002.
    const c3 = config({ targetConcurrency: 3 });
    state = observe(initialState(), { t: 0, concurrency: 21 }, c3);
    assert.equal(decide(state, 0, 10, c3).decision.desired, 10);
    state = observe(initialState(), { t: 0, concurrency: 22 }, c3);
    assert.equal(decide(state, 0, 10, c3).decision.desired, 11);
  });

  it("from zero with queued requests scales up at once, whatever the scale-up rate", () => {
    const cfg = config({ maxScaleUpRate: 1 });
    const state = observe(initialState(), { t: 5 * S, concurrency: 30 }, cfg);
    const { decision } = decide(state, 5 * S, 0, cfg);
    assert.equal(decision.desired, 5); // ceil(30 / 7)
    assert.equal(decision.panic, true);
    assert.match(decision.reason, /panic/);
    // Concurrency 1: one queued request wants ceil(1 / 0.7) = 2.
    const c1 = config({ targetConcurrency: 1 });
    const one = observe(initialState(), { t: 0, concurrency: 1 }, c1);
    assert.equal(decide(one, 0, 0, c1).decision.desired, 2);
  });

  it("with no samples in the stable window keeps what is ready", () => {
    const cfg = config({ minInstances: 1 });
    let r = decide(initialState(), 100 * S, 3, cfg);
    assert.equal(r.decision.desired, 3);
    assert.match(r.decision.reason, /no samples/);
    assert.equal(decide(initialState(), 0, 0, cfg).decision.desired, 1, "raised to minInstances");
    // The only sample is 60 s old: window (40 s, 100 s] is empty.
    const old = observe(initialState(), { t: 40 * S, concurrency: 50 }, cfg);
    r = decide(old, 100 * S, 3, cfg);
    assert.equal(r.decision.desired, 3);
    assert.deepEqual(r.state.samples, []);
  });

  it("steady ramp: follows the stable average, never panics, never scales down", () => {
    // 70 in flight (10 instances) for a minute, then one more request each second.
    const run = simulate(config(), (s) => (s <= 0 ? 70 : 70 + s), { from: -59, until: 120, ready: 10 });
    // At 60 s the window holds 1..60 on top of 70: average 100.5 → ceil(14.36) = 15.
    assert.equal(run.at(60).desired, 15);
    assert.equal(run.at(60).stableConcurrency, 100.5);
    // At 120 s it holds 61..120: average 160.5 → ceil(22.93) = 23.
    assert.equal(run.at(120).desired, 23);
    assert.equal(run.at(2).desired, 11); // 70.05 / 7 = 10.007 → 11
    assert.ok(run.all.every((x) => !x.decision.panic));
    const d = run.desired(2, 120);
    assert.ok(
      d.every((v, i) => i === 0 || v >= d[i - 1]!),
      `non-decreasing: ${d}`,
    );
  });

  it("sudden burst: panics at once, holds the peak for a stable window, then steps down", () => {
    // 14 in flight (2 instances); 140 from 61 s to 70 s; 14 again after.
    const load = (s: number) => (s >= 61 && s <= 70 ? 140 : 14);
    const run = simulate(config(), load, { from: -59, until: 130, ready: 2 });
    assert.deepEqual(run.at(60), {
      desired: 2,
      panic: false,
      reason: "stable window average 14 wants 2 → 2",
      stableConcurrency: 14,
      panicConcurrency: 14,
    });
    // 62 s: panic window 57..62 averages (4*14 + 2*140) / 6 = 56 → 8 >= 2 * 2 ready.
    // The stable window alone (average 18.2) would want only 3.
    const p = run.at(62);
    assert.equal(p.desired, 8);
    assert.equal(p.panic, true);
    assert.equal(p.panicConcurrency, 56);
    assert.equal(p.stableConcurrency, 18.2);
    assert.equal(run.at(64).desired, 14); // 59..64: (2*14 + 4*140) / 6 = 98 → 14
    assert.equal(run.at(66).desired, 20); // all 140 → 20
    // The burst is over at 70 s, yet panic holds 20 until one stable window after the
    // crossing at 62 s.
    assert.deepEqual(run.desired(66, 120), new Array(28).fill(20));
    assert.ok(run.all.filter((x) => x.s >= 62 && x.s <= 120).every((x) => x.decision.panic));
    // 122 s: out of panic. Stable 63..122 = (8*140 + 52*14) / 60 = 30.8 → 5, but halving
    // from 20 allows no fewer than 10.
    assert.equal(run.at(122).panic, false);
    assert.equal(run.at(122).desired, 10);
    assert.match(run.at(122).reason, /scale-down limited to 10/);
    assert.equal(run.at(124).desired, 5); // wants 4, halving from 10 stops at 5
    assert.equal(run.at(126).desired, 4); // 22.4 → 4
    assert.equal(run.at(128).desired, 3); // 18.2 → 3
    assert.equal(run.at(130).desired, 2); // 14 → 2
  });

  it("spike then silence: holds through the window, reaches zero only after the idle timeout", () => {
    // From nothing: 35 in flight from 1 s to 10 s, then silence. Idle timeout 120 s.
    const run = simulate(config(), (s) => (s <= 10 ? 35 : 0), { until: 140, ready: 0 });
    assert.equal(run.at(2).desired, 5, "starts 5 at the first decision");
    assert.equal(run.at(2).panic, true);
    assert.deepEqual(run.desired(2, 60), new Array(30).fill(5), "panic holds 5 for a stable window");
    // 62 s: stable 3..62 has 8 samples of 35 → 4.67 → 1 wanted; halving 5 stops at 2.
    assert.equal(run.at(62).desired, 2);
    assert.equal(run.at(62).panic, false);
    assert.deepEqual(run.desired(64, 68), [1, 1, 1]);
    // 70 s: the window is all zeros but the last load was 60 s ago: keep one.
    assert.equal(run.at(70).desired, 1);
    assert.match(run.at(70).reason, /kept 1: idle for 60000 ms/);
    assert.deepEqual(run.desired(70, 128), new Array(30).fill(1));
    // 130 s: 120 s after the last load at 10 s.
    assert.equal(run.at(130).desired, 0);
    assert.match(run.at(130).reason, /scaled to zero/);
    assert.deepEqual(run.desired(132, 140), [0, 0, 0, 0, 0]);
  });

  it("never goes to zero while the stable window has seen load", () => {
    // A target of 7e8 per instance: 1 request is 1.4e-9 instances, just above the 1e-9 rounding
    // tolerance; from 2 s the average (1/2, then less) is below it and ceil gives 0. The guard
    // keeps one while the 1 s sample is in the window.
    const cfg = config({ targetConcurrency: 1_000_000_000, idleTimeoutMs: 0 });
    const run = simulate(cfg, (s) => (s === 1 ? 1 : 0), { until: 62, ready: 1, tickS: 1 });
    assert.deepEqual(run.desired(1, 60), new Array(60).fill(1));
    assert.match(run.at(60).reason, /kept 1: load observed/);
    // 61 s: the 1 s sample left (1 s, 61 s]; with idle timeout 0 it goes at once.
    assert.equal(run.at(61).desired, 0);
  });

  describe("flapping load: 70 and 42 in flight alternating every 10 s, stable window 10 s", () => {
    const load = (s: number) => (s <= 0 ? 70 : s > 90 ? 42 : (s - 1) % 20 < 10 ? 70 : 42);
    const base = { stableWindowMs: 10_000, panicWindowMs: 1_000 };

    it("without a scale-down delay the count oscillates", () => {
      const run = simulate(config(base), load, { from: -9, until: 130, ready: 10 });
      // 12 s: 3..12 = (8*70 + 2*42) / 10 = 64.4 → 10; 14 s: 58.8 → 9; ... 20 s: 42 → 6.
      assert.deepEqual(run.desired(12, 30), [10, 9, 8, 7, 6, 7, 8, 9, 10, 10]);
      const d = run.desired(2, 100);
      let turns = 0;
      let dir = 0;
      for (let i = 1; i < d.length; i++) {
        const step = Math.sign(d[i]! - d[i - 1]!);
        if (step !== 0 && step !== dir) {
          if (dir !== 0) turns++;
          dir = step;
        }
      }
      assert.equal(turns, 8);
      assert.ok(run.all.every((x) => !x.decision.panic));
    });

    it("a 30 s scale-down delay holds the peak, then steps down 30 s after each lower want", () => {
      const run = simulate(config({ ...base, scaleDownDelayMs: 30_000 }), load, {
        from: -9,
        until: 130,
        ready: 10,
      });
      // 10 is wanted at least every 16 s while the load flaps, so the max over 30 s stays 10.
      assert.deepEqual(run.desired(2, 120), new Array(60).fill(10));
      assert.match(run.at(100).reason, /scale-down delayed: 10 wanted within 30000 ms/);
      // The last 10 was wanted at 92 s; then 9 at 94, 8 at 96, 7 at 98, 6 from 100.
      assert.deepEqual(run.desired(122, 130), [9, 8, 7, 6, 6]);
    });
  });

  it("clamps to minInstances and maxInstances", () => {
    const cfg = config({ minInstances: 2, maxInstances: 5, idleTimeoutMs: 10_000 });
    // No load at all for 3 minutes: never below 2, though the idle timeout passed long ago.
    const quiet = simulate(cfg, () => 0, { until: 180, ready: 2 });
    assert.ok(quiet.all.every((x) => x.decision.desired === 2));
    assert.match(quiet.at(180).reason, /raised to minInstances 2/);
    // 700 in flight wants 100: capped at 5.
    const busy = simulate(cfg, () => 700, { until: 4, ready: 2 });
    assert.deepEqual(busy.desired(2, 4), [5, 5]);
    assert.equal(busy.at(2).panic, true);
    assert.match(busy.at(2).reason, /capped at maxInstances 5/);
  });

  it("limits scale-up to ceil(ready * maxScaleUpRate) per decision", () => {
    // 700 in flight for a minute wants 100; from 3 ready at rate 1.5: 5, 8, 12, 18, 27, 41, 62, 93, 100.
    const cfg = config({ maxScaleUpRate: 1.5, maxInstances: 200 });
    const run = simulate(cfg, () => 700, { from: -59, until: 18, ready: 3 });
    assert.deepEqual(run.desired(2, 18), [5, 8, 12, 18, 27, 41, 62, 93, 100]);
    // Panic compares the unlimited want (100 >= 2 * 3), not the limited 5.
    assert.equal(run.at(2).panic, true);
    assert.match(run.at(2).reason, /scale-up limited to 5/);
  });

  it("limits scale-down to floor(ready / maxScaleDownRate) per decision", () => {
    // A minute of zeros with 16 ready; the last activity is recent enough to keep one.
    const halve = simulate(config(), () => 0, { from: -59, until: 10, ready: 16 });
    assert.deepEqual(halve.desired(2, 10), [8, 4, 2, 1, 1]);
    const quarter = simulate(config({ maxScaleDownRate: 4 }), () => 0, { from: -59, until: 6, ready: 16 });
    assert.deepEqual(quarter.desired(2, 6), [4, 1, 1]);
  });

  it("rejects an invalid config or ready count", () => {
    const state = observe(initialState(), { t: 0, concurrency: 1 }, config());
    assert.throws(
      () => decide(state, 0, 1, config({ targetConcurrency: 0 })),
      /targetConcurrency must be >= 1/,
    );
    assert.throws(() => decide(state, 0, 1, config({ targetUtilization: 1.5 })), RangeError);
    assert.throws(() => decide(state, 0, 1, config({ panicWindowMs: 90_000 })), RangeError);
    assert.throws(() => decide(state, 0, 1, config({ maxScaleDownRate: 0.5 })), RangeError);
    assert.throws(() => decide(state, 0, 1, config({ minInstances: 6, maxInstances: 5 })), RangeError);
    assert.throws(() => decide(state, 0, -1, config()), /ready must be a whole number/);
  });
});
