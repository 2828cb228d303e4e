/**
 * The autoscaler as a pure decision, in the style of Knative's KPA: how many instances one
 * function version should have now, from the concurrency observed over a stable window and a
 * shorter panic window. No timers and no clock: the caller records samples with `observe`,
 * asks `decide(state, now, ready, cfg)` on its tick, and keeps the returned state. Tests step
 * the clock.
 *
 * The caller samples at a fixed period (every second, say), zeros included, as Knative's
 * collector scrapes every second: an average here is the plain mean of the samples in a window,
 * so a period with no samples is "no data", not "no load".
 *
 * @example
 * let state = initialState();
 * // every second:
 * state = observe(state, { t: now, concurrency: inflight + queued }, cfg);
 * // every two seconds:
 * const { decision, state: next } = decide(state, now, readyInstances, cfg);
 * state = next;
 * pool.scaleTo(decision.desired);
 */

/** How one function version scales. Build it from the function's config over `DEFAULT_AUTOSCALER`. */
export interface AutoscalerConfig {
  /**
   * Requests one instance serves at once: the function's `concurrency`. At least 1.
   * @default the function's `concurrency` (1 unless configured)
   */
  targetConcurrency: number;
  /**
   * Fraction of `targetConcurrency` to aim for, leaving headroom for bursts. In (0, 1].
   * With concurrency 10 and 0.7, each instance is sized for 7 requests in flight.
   * @default 0.7
   */
  targetUtilization: number;
  /**
   * The window whose average concurrency sets the instance count in normal operation, ms.
   * Also the least time panic mode lasts, and the span of samples kept.
   * @default 60000
   */
  stableWindowMs: number;
  /**
   * The short window whose average detects bursts, ms. At most `stableWindowMs`.
   * @default 6000 (10% of the stable window)
   */
  panicWindowMs: number;
  /**
   * Panic when the panic window wants at least this many times the ready instances.
   * @default 2 (the panic window wants 200% of the current capacity)
   */
  panicThreshold: number;
  /**
   * One decision grows the count to at most `ceil(ready * maxScaleUpRate)`. At least 1.
   * From zero ready instances there is no limit.
   * @default 1000
   */
  maxScaleUpRate: number;
  /**
   * One decision shrinks the count to no less than `floor(ready / maxScaleDownRate)`. At least 1.
   * @default 2 (at most halve per decision)
   */
  maxScaleDownRate: number;
  /**
   * Scaling down uses the highest count wanted within this many ms, so load that flaps does
   * not make instances flap. 0 turns it off.
   * @default 0
   */
  scaleDownDelayMs: number;
  /**
   * Instances kept even with no load (never scaled to zero when above 0).
   * @default the function's `minInstances` (0 unless configured)
   */
  minInstances: number;
  /**
   * Instances at most; the decision is clamped to it.
   * @default the function's `maxInstances` (10 unless configured)
   */
  maxInstances: number;
  /**
   * With `minInstances` 0: the last instance is stopped only after this many ms with zero
   * concurrency observed.
   * @default the function's `idleTimeoutMs` (300000 unless configured)
   */
  idleTimeoutMs: number;
}

/**
 * The defaults of the settings that do not come from the function's config.
 * Same values as Knative's KPA defaults.
 */
export const DEFAULT_AUTOSCALER: Omit<
  AutoscalerConfig,
  "targetConcurrency" | "minInstances" | "maxInstances" | "idleTimeoutMs"
> = {
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  maxScaleUpRate: 1000,
  maxScaleDownRate: 2,
  scaleDownDelayMs: 0,
};

/** One observation: requests in flight on one version plus those queued for it, at time `t` (ms). */
export interface Sample {
  /** When it was observed, ms since the epoch. */
  t: number;
  /** In-flight plus queued requests of the version. At least 0. */
  concurrency: number;
}

/** A count the autoscaler wanted at time `t`, kept for the scale-down delay. */
export interface DesiredRecord {
  t: number;
  desired: number;
}

/**
 * What the autoscaler remembers between decisions. Treat it as opaque and immutable: pass the
 * state `observe` or `decide` returned to the next call.
 */
export interface AutoscalerState {
  /** Samples within the stable window, oldest first. */
  readonly samples: readonly Sample[];
  /** Panic mode lasts until this time unless the threshold is crossed again; null: not panicking. */
  readonly panicUntil: number | null;
  /** The most instances wanted since panic began (panic never scales down); 0 when not panicking. */
  readonly panicPeak: number;
  /**
   * The last time concurrency above 0 was observed; before any traffic, the time of the first
   * sample (the idle clock starts when observation does). null: nothing observed yet.
   */
  readonly lastActive: number | null;
  /** Counts wanted within the scale-down delay, oldest first. */
  readonly desiredHistory: readonly DesiredRecord[];
}

/** One decision. */
export interface Decision {
  /** Instances the version should have now. */
  desired: number;
  /** Whether panic mode is on. */
  panic: boolean;
  /** Why, in words, for logs: the averages, the mode and each limit that applied. */
  reason: string;
  /** Mean concurrency over the stable window (0 without samples). */
  stableConcurrency: number;
  /** Mean concurrency over the panic window (0 without samples). */
  panicConcurrency: number;
}

/**
 * The state before anything was observed.
 * @example
 * initialState() // { samples: [], panicUntil: null, panicPeak: 0, lastActive: null, desiredHistory: [] }
 */
export function initialState(): AutoscalerState {
  return { samples: [], panicUntil: null, panicPeak: 0, lastActive: null, desiredHistory: [] };
}

/**
 * Records a sample and returns the new state (the given state is not changed). Drops samples
 * that fell out of the stable window, counted back from the newest sample. Samples may arrive
 * out of order.
 *
 * @example
 * // stable window 60 s: a sample at t=61 s drops the one at t=1 s (window is (1 s, 61 s]).
 * observe(state, { t: 61_000, concurrency: 3 }, cfg)
 * @throws RangeError when `t` is not finite or `concurrency` is negative or not finite.
 */
export function observe(
  state: AutoscalerState,
  sample: Sample,
  cfg: Pick<AutoscalerConfig, "stableWindowMs">,
): AutoscalerState {
  if (!Number.isFinite(sample.t))
    throw new RangeError(`autoscaler: sample time must be finite, got ${sample.t}.`);
  if (!Number.isFinite(sample.concurrency) || sample.concurrency < 0) {
    throw new RangeError(
      `autoscaler: sample concurrency must be a finite number >= 0, got ${sample.concurrency}.`,
    );
  }
  const s: Sample = { t: sample.t, concurrency: sample.concurrency };
  const samples = [...state.samples];
  let at = samples.length;
  while (at > 0 && samples[at - 1]!.t > s.t) at--;
  samples.splice(at, 0, s);
  const newest = samples[samples.length - 1]!.t;
  const lastActive =
    state.lastActive === null ? s.t : s.concurrency > 0 ? Math.max(state.lastActive, s.t) : state.lastActive;
  return {
    ...state,
    samples: samples.filter((x) => x.t > newest - cfg.stableWindowMs),
    lastActive,
  };
}

// ceil(avg / target) with floating-point noise removed first. Why: 3 * 0.7 is
// 2.0999999999999996, so 21 requests at concurrency 3 give 21 / 2.0999999999999996 =
// 10.000000000000002 and a bare ceil asks for 11 instances where 10 are exactly enough.
const EPSILON = 1e-9;

function instancesFor(concurrency: number, perInstance: number): number {
  return Math.max(0, Math.ceil(concurrency / perInstance - EPSILON));
}

/** Mean of the samples with now - windowMs < t <= now; null when there are none. */
function windowAverage(samples: readonly Sample[], now: number, windowMs: number): number | null {
  let sum = 0;
  let n = 0;
  for (const s of samples) {
    if (s.t > now - windowMs && s.t <= now) {
      sum += s.concurrency;
      n++;
    }
  }
  return n === 0 ? null : sum / n;
}

function checkConfig(cfg: AutoscalerConfig): void {
  const fail = (field: keyof AutoscalerConfig, allowed: string): never => {
    throw new RangeError(`autoscaler: ${field} must be ${allowed}, got ${cfg[field]}.`);
  };
  const finite = (v: number) => Number.isFinite(v);
  if (!finite(cfg.targetConcurrency) || cfg.targetConcurrency < 1) fail("targetConcurrency", ">= 1");
  if (!(cfg.targetUtilization > 0 && cfg.targetUtilization <= 1)) fail("targetUtilization", "in (0, 1]");
  if (!finite(cfg.stableWindowMs) || cfg.stableWindowMs <= 0) fail("stableWindowMs", "> 0");
  if (!(cfg.panicWindowMs > 0 && cfg.panicWindowMs <= cfg.stableWindowMs)) {
    fail("panicWindowMs", `in (0, stableWindowMs = ${cfg.stableWindowMs}]`);
  }
  if (!finite(cfg.panicThreshold) || cfg.panicThreshold <= 0) fail("panicThreshold", "> 0");
  if (!(cfg.maxScaleUpRate >= 1)) fail("maxScaleUpRate", ">= 1");
  if (!finite(cfg.maxScaleDownRate) || cfg.maxScaleDownRate < 1)
    fail("maxScaleDownRate", "a finite number >= 1");
  if (!finite(cfg.scaleDownDelayMs) || cfg.scaleDownDelayMs < 0) fail("scaleDownDelayMs", ">= 0");
  if (!Number.isInteger(cfg.minInstances) || cfg.minInstances < 0)
    fail("minInstances", "a whole number >= 0");
  if (!Number.isInteger(cfg.maxInstances) || cfg.maxInstances < cfg.minInstances) {
    fail("maxInstances", `a whole number >= minInstances (${cfg.minInstances})`);
  }
  if (!(cfg.idleTimeoutMs >= 0)) fail("idleTimeoutMs", ">= 0");
}

const fmt = (n: number) => String(Math.round(n * 100) / 100);

/**
 * Decides how many instances the version should have at `now`, given `ready` instances serving
 * now. Returns the decision and the state to keep (the given state is not changed).
 *
 * In order:
 * 1. No sample in the stable window: nothing is known, so keep `ready` (within min/max).
 * 2. Wanted = ceil(average / (targetConcurrency * targetUtilization)), for both windows.
 * 3. Both limited to [floor(ready / maxScaleDownRate), ceil(ready * maxScaleUpRate)].
 * 4. Panic when the panic window wants >= panicThreshold * ready (from 0 ready: any load).
 *    It lasts one stable window after the last time that held; meanwhile the count follows the
 *    panic window and never goes down.
 * 5. The highest count wanted within scaleDownDelayMs.
 * 6. Not 0 while the stable window saw load, nor before idleTimeoutMs without load.
 * 7. Clamped to [minInstances, maxInstances].
 *
 * @example
 * // concurrency 10, utilization 0.7 → 7 per instance; 2 ready; the last 60 s averaged 14
 * // and the last 6 s 56 → the panic window wants 8 >= 2 * 2: panic, 8 instances.
 * decide(state, now, 2, cfg).decision // { desired: 8, panic: true, ... }
 * @throws RangeError on an invalid config, or `ready` not a whole number >= 0.
 */
export function decide(
  state: AutoscalerState,
  now: number,
  ready: number,
  cfg: AutoscalerConfig,
): { decision: Decision; state: AutoscalerState } {
  checkConfig(cfg);
  if (!Number.isFinite(now)) throw new RangeError(`autoscaler: now must be finite, got ${now}.`);
  if (!Number.isInteger(ready) || ready < 0) {
    throw new RangeError(`autoscaler: ready must be a whole number >= 0, got ${ready}.`);
  }
  const clamp = (n: number) => Math.min(cfg.maxInstances, Math.max(cfg.minInstances, n));
  const samples = state.samples.filter((s) => s.t > now - cfg.stableWindowMs);

  const stableAvg = windowAverage(samples, now, cfg.stableWindowMs);
  if (stableAvg === null) {
    // Knative skips scaling without metrics; removing instances on no evidence could drop
    // load we cannot see, and adding them has no basis. Panic state is kept as it is.
    const desired = clamp(ready);
    return {
      decision: {
        desired,
        panic: state.panicUntil !== null,
        reason: `no samples in the last ${cfg.stableWindowMs} ms: keeping ${ready} ready${desired !== ready ? `, clamped to ${desired}` : ""}`,
        stableConcurrency: 0,
        panicConcurrency: 0,
      },
      state: { ...state, samples },
    };
  }
  const panicAvg = windowAverage(samples, now, cfg.panicWindowMs) ?? 0;
  const reasons: string[] = [];

  // Each instance is sized for targetConcurrency * targetUtilization requests. With
  // concurrency 10 and utilization 0.7 that is 7, so an average of 15 wants ceil(15 / 7) = 3
  // (2 would run at 7.5 each, above the target). With concurrency 1 it is 0.7, so a single
  // request wants ceil(1 / 0.7) = 2: the second instance is the headroom for the next one.
  const perInstance = cfg.targetConcurrency * cfg.targetUtilization;
  const stableWant = instancesFor(stableAvg, perInstance);
  const panicWant = instancesFor(panicAvg, perInstance);

  // Rate limits, relative to what is ready now. Up: 3 ready at rate 1.5 → at most ceil(4.5) = 5;
  // at the default 1000 it does not bind in practice. From 0 ready there is nothing to
  // multiply, so whatever is wanted is allowed (else a burst at zero could never start).
  // Down: 9 ready at rate 2 → no fewer than floor(4.5) = 4; 1 ready → floor(0.5) = 0.
  const maxUp = ready === 0 ? Number.POSITIVE_INFINITY : Math.ceil(ready * cfg.maxScaleUpRate);
  const maxDown = Math.floor(ready / cfg.maxScaleDownRate);
  const limit = (n: number) => Math.min(Math.max(n, maxDown), maxUp);
  const stableLimited = limit(stableWant);
  const panicLimited = limit(panicWant);

  // The threshold compares the unlimited panic count: 4 ready, panic window average 56 → wants
  // 8 >= 2 * 4, panic. With 0 ready any load panics, so the count cannot drop during the
  // first stable window after a cold start.
  const overThreshold = ready > 0 ? panicWant >= cfg.panicThreshold * ready : panicWant > 0;
  let panicUntil = state.panicUntil;
  let panicPeak = state.panicPeak;
  if (overThreshold) {
    if (panicUntil === null) panicPeak = ready;
    // Each crossing extends panic: crossed at 62 s with a 60 s stable window → panic until 122 s.
    panicUntil = now + cfg.stableWindowMs;
  } else if (panicUntil !== null && now >= panicUntil) {
    panicUntil = null;
    panicPeak = 0;
  }
  const panic = panicUntil !== null;

  let desired: number;
  if (panic) {
    // Never down in panic: panic window wants 20, then 14 as the burst fades → keep 20.
    panicPeak = Math.max(panicPeak, panicLimited, ready);
    desired = panicPeak;
    reasons.push(
      `panic until ${panicUntil}: panic window average ${fmt(panicAvg)} wants ${panicWant}` +
        (overThreshold ? ` (>= ${cfg.panicThreshold} x ${ready} ready)` : "") +
        `, holding the peak ${panicPeak}`,
    );
    if (panicLimited < panicWant) reasons.push(`scale-up limited to ${maxUp}`);
  } else {
    desired = stableLimited;
    reasons.push(`stable window average ${fmt(stableAvg)} wants ${stableWant}`);
    if (stableLimited < stableWant) reasons.push(`scale-up limited to ${maxUp}`);
    if (stableLimited > stableWant) reasons.push(`scale-down limited to ${maxDown}`);
  }

  // Scale-down delay, Knative's max window: with a 30 s delay, wanting 10 at 92 s and less
  // since keeps 10 until the 10 leaves the window (the decision at 122 s no longer sees it).
  // Scaling up is immediate, as the current count is part of the max.
  const desiredHistory = [
    ...state.desiredHistory.filter((h) => h.t > now - cfg.scaleDownDelayMs && h.t <= now),
    { t: now, desired },
  ];
  const delayed = Math.max(...desiredHistory.map((h) => h.desired));
  if (delayed > desired)
    reasons.push(`scale-down delayed: ${delayed} wanted within ${cfg.scaleDownDelayMs} ms`);

  let final = delayed;
  if (final === 0) {
    // The count reaches 0 only once the stable window has seen no load at all (60 s of zeros
    // at the defaults) — and then the idle timeout must also have passed since the last load:
    // load until 10 s, idle timeout 120 s → 1 instance until 130 s, 0 from 130 s. Whichever of
    // the two is longer decides when. Nothing ready: keep 0, no need to start one for no load.
    // The guard matters where ceil's 1e-9 tolerance rounds a tiny average over a huge target
    // to 0: concurrency 1e9 → 7e8 per instance, average 0.5 → 7e-10 instances → ceil gives 0.
    const latest = samples.at(-1);
    if (stableAvg > 0 || (latest !== undefined && latest.concurrency > 0)) {
      final = 1;
      reasons.push("kept 1: load observed");
    } else if (ready > 0 && (state.lastActive === null || now - state.lastActive < cfg.idleTimeoutMs)) {
      final = 1;
      const since = state.lastActive === null ? "never active" : `idle for ${now - state.lastActive} ms`;
      reasons.push(`kept 1: ${since}, idle timeout ${cfg.idleTimeoutMs} ms`);
    } else if (ready > 0) {
      reasons.push(`scaled to zero after ${cfg.idleTimeoutMs} ms idle`);
    }
  }

  const clamped = clamp(final);
  if (clamped > final) reasons.push(`raised to minInstances ${cfg.minInstances}`);
  if (clamped < final) reasons.push(`capped at maxInstances ${cfg.maxInstances}`);

  return {
    decision: {
      desired: clamped,
      panic,
      reason: `${reasons.join("; ")} → ${clamped}`,
      stableConcurrency: stableAvg,
      panicConcurrency: panicAvg,
    },
    state: { samples, panicUntil, panicPeak, lastActive: state.lastActive, desiredHistory },
  };
}
