/// <reference lib="dom.iterable" />
/// <reference lib="dom.asynciterable" />
/**
 * The conformance suite's own small test harness. It runs INSIDE a deployed function (on
 * both executors), so it imports nothing and uses only what a Web-standard runtime has.
 * Subtests are named like the Web Platform Tests they are derived from, one result each.
 */

/** A subtest body: throws (or rejects) on failure. */
export type Check = () => void | Promise<void>;

/** The outcome of one area. */
export interface AreaResult {
  passed: number;
  total: number;
  /** Names of the failed subtests, each with its first error message. */
  failed: [string, string][];
}

/** Registers and runs subtests, grouped by area. */
export class Suite {
  private readonly cases: { area: string; name: string; fn: Check }[] = [];
  private readonly names = new Set<string>();
  /** The area subtests registered now belong to. */
  area = "";

  /** Registers one subtest; a repeated name gets a counter so every subtest is counted. */
  test(name: string, fn: Check): void {
    let unique = name;
    for (let i = 2; this.names.has(`${this.area}\u0000${unique}`); i++) unique = `${name} (${i})`;
    this.names.add(`${this.area}\u0000${unique}`);
    this.cases.push({ area: this.area, name: unique, fn });
  }

  /** Runs every subtest (each bounded by `timeoutMs`) and returns the results per area. */
  async run(timeoutMs = 2000): Promise<Record<string, AreaResult>> {
    const out: Record<string, AreaResult> = {};
    for (const c of this.cases) {
      out[c.area] ??= { passed: 0, total: 0, failed: [] };
      const r = out[c.area]!;
      r.total++;
      try {
        await withTimeout(c.fn, timeoutMs);
        r.passed++;
      } catch (e) {
        r.failed.push([c.name, describe(e).slice(0, 300)]);
      }
    }
    return out;
  }
}

function describe(e: unknown): string {
  if (e && typeof e === "object" && "message" in e) {
    const name = (e as { name?: unknown }).name;
    return `${String(name)}: ${String((e as { message: unknown }).message)}`;
  }
  return String(e);
}

async function withTimeout(fn: Check, ms: number): Promise<void> {
  const r = fn();
  // Synchronous subtests (most of them) need no timer.
  if (!r || typeof (r as Promise<void>).then !== "function") return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      r,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Thrown by a failed assertion. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "symbol") return v.toString();
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** SameValue equality (like `assert_equals`). */
export function eq(actual: unknown, expected: unknown, what = "value"): void {
  if (!Object.is(actual, expected)) {
    throw new AssertionError(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Element-wise SameValue equality of array-likes, nested arrays compared the same way. */
export function arrayEq(actual: unknown, expected: readonly unknown[], what = "array"): void {
  if (!actual || typeof (actual as { length?: unknown }).length !== "number") {
    throw new AssertionError(`${what}: expected an array, got ${show(actual)}`);
  }
  const a = actual as ArrayLike<unknown>;
  eq(a.length, expected.length, `${what} length`);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (Array.isArray(e)) arrayEq(a[i], e, `${what}[${i}]`);
    else eq(a[i], e, `${what}[${i}]`);
  }
}

/** Passes when `cond` is truthy. */
export function ok(cond: unknown, what = "condition"): void {
  if (!cond) throw new AssertionError(`${what} is not true`);
}

/** Passes when `fn` throws an error whose `name` is `name` (TypeError, RangeError, DataCloneError …). */
export function throws(name: string, fn: () => unknown, what = "call"): void {
  try {
    fn();
  } catch (e) {
    const got = (e as { name?: unknown } | null)?.name;
    if (got !== name) throw new AssertionError(`${what}: expected ${name}, got ${describe(e)}`);
    return;
  }
  throw new AssertionError(`${what}: expected ${name}, nothing was thrown`);
}

/** Passes when `p` rejects with an error whose `name` is `name`. */
export async function rejects(
  name: string,
  p: Promise<unknown> | (() => Promise<unknown>),
  what = "promise",
): Promise<void> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    const got = (e as { name?: unknown } | null)?.name;
    if (got !== name)
      throw new AssertionError(`${what}: expected rejection with ${name}, got ${describe(e)}`);
    return;
  }
  throw new AssertionError(`${what}: expected rejection with ${name}, it resolved`);
}

/** Reads a whole stream into an array of its chunks. */
export async function readAllChunks<T>(stream: ReadableStream<T>): Promise<T[]> {
  const reader = stream.getReader();
  const out: T[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}
