/**
 * Cold start: the client-side latency of the first request after a function scaled to zero.
 *
 * The function is deployed with a short idle window (`idleTimeout`) and the server runs a
 * fast reaper, so after each sample its only instance is stopped. Before the next sample the
 * harness waits until the function has no instance and the pre-started pool is full again,
 * then sends one request and checks it was served cold (`x-nimbus-cold-start: 1`). A second
 * request right after it (served warm by the same instance) gives the warm latency at idle
 * for contrast.
 */
import {
  api,
  deploy,
  HELLO_FN,
  httpRequest,
  type Summary,
  sleep,
  summarize,
  type Target,
  waitFor,
} from "./harness.ts";

/** What one cold-start series measures. */
export interface ColdOptions {
  /** Row label, e.g. "process, pre-started pool". */
  label: string;
  /** Function name to deploy. */
  name: string;
  executor: "process" | "isolate";
  samples: number;
  /** Pre-started runtimes the server keeps (0: every cold start spawns a fresh process). */
  prewarm: number;
  /** Pause after scale-to-zero so the pre-started pool is refilled and ready, ms. */
  settleMs: number;
  /** Wall-clock budget of the series, ms; fewer samples are taken when it runs out. */
  budgetMs: number;
}

/** A cold-start series' results. */
export interface ColdResult {
  label: string;
  executor: "process" | "isolate";
  prewarm: number;
  /** Cold first requests, ms (client side, to the last byte). */
  cold: Summary;
  /** The request right after each cold one (same instance, warm), ms. */
  warmAfter: Summary;
  /**
   * The same cold invocations as the server recorded them (invoker start to response end,
   * so the instance start is included and the HTTP parsing before it is not), ms.
   */
  serverCold?: Summary;
  /** Samples whose first request was NOT reported cold (excluded from `cold`). */
  notCold: number;
  /** Samples wanted vs taken (the budget may cut the series short). */
  wanted: number;
  settleMs: number;
  idleTimeout: string;
  raw: number[];
}

/** Idle window of the function under test: short, so that scale-to-zero is quick. */
const IDLE_TIMEOUT = "100ms";

interface FunctionInfo {
  instances: { starting: number; idle: number; busy: number };
}

async function instanceCount(target: Target, name: string): Promise<number> {
  const f = await api<FunctionInfo>(target, "GET", `/api/v1/functions/${name}`);
  return f.instances.starting + f.instances.idle + f.instances.busy;
}

async function warmPoolFull(target: Target, prewarm: number): Promise<boolean> {
  if (prewarm === 0) return true;
  const s = await api<{ warmPool: Record<string, number> }>(target, "GET", "/api/v1/status");
  return (s.warmPool["128"] ?? 0) >= prewarm;
}

/** Runs one cold-start series against a running Nimbus target. */
export async function measureCold(
  target: Target,
  o: ColdOptions,
  progress: (m: string) => void,
): Promise<ColdResult> {
  await deploy(target, o.name, HELLO_FN, {
    idleTimeout: IDLE_TIMEOUT,
    maxInstances: 1,
    executor: o.executor,
  });
  const url = `${target.url}/fn/${o.name}`;
  const cold: number[] = [];
  const warmAfter: number[] = [];
  let notCold = 0;
  const deadline = performance.now() + o.budgetMs;
  for (let i = 0; i < o.samples && performance.now() < deadline; i++) {
    await waitFor(
      `${o.name} to scale to zero`,
      async () => (await instanceCount(target, o.name)) === 0,
      10_000,
    );
    if (o.executor === "process")
      await waitFor("the pre-started pool to refill", () => warmPoolFull(target, o.prewarm));
    // The pool count includes runtimes still booting: give them time to be ready.
    await sleep(o.settleMs);
    const first = await httpRequest(url);
    if (first.status !== 200)
      throw new Error(`${url} answered ${first.status} on a cold start: ${first.body.slice(0, 300)}`);
    if (first.headers["x-nimbus-cold-start"] === "1") cold.push(first.ms);
    else notCold++;
    const second = await httpRequest(url);
    if (second.status === 200 && second.headers["x-nimbus-cold-start"] === "0") warmAfter.push(second.ms);
    if ((i + 1) % 10 === 0) progress(`  ${o.label}: ${i + 1}/${o.samples} samples`);
  }
  // The server's own view of the same invocations (newest first; cold ones only).
  let serverCold: Summary | undefined;
  try {
    const r = await api<{ invocations: { coldStart: boolean; durationMs: number }[] }>(
      target,
      "GET",
      `/api/v1/functions/${o.name}/invocations?limit=${Math.min(10_000, 2 * o.samples + 10)}`,
    );
    serverCold = summarize(r.invocations.filter((i) => i.coldStart).map((i) => i.durationMs));
  } catch (err) {
    progress(`  (no invocation records: ${(err as Error).message.split("\n")[0]})`);
  }
  return {
    label: o.label,
    executor: o.executor,
    prewarm: o.prewarm,
    cold: summarize(cold),
    warmAfter: summarize(warmAfter),
    serverCold,
    notCold,
    wanted: o.samples,
    settleMs: o.settleMs,
    idleTimeout: IDLE_TIMEOUT,
    raw: cold.map((v) => Math.round(v * 1000) / 1000),
  };
}
