/**
 * Log quotas: how much one invocation, and one function over time, may write to its log.
 * Lines past a quota are dropped and counted; the count is written as one marker line.
 * Pure decision logic: the clock is passed in.
 */
import { cutLogLine } from "../runtime/protocol.ts";

/** Quotas on log lines. */
export interface LogQuotaOptions {
  /** Lines one invocation may log. @default 10000 */
  invocationLines?: number;
  /** Characters one invocation may log (all its lines together). @default 4194304 (4 MB) */
  invocationBytes?: number;
  /** Characters per second one function may log, sustained (all its instances). @default 1048576 */
  functionBytesPerSecond?: number;
  /** Characters one function may log in a burst above its rate. @default 8388608 */
  functionBurstBytes?: number;
  /** Lines per second one function may log, sustained. @default 2000 */
  functionLinesPerSecond?: number;
  /** Lines one function may log in a burst above its rate. @default 20000 */
  functionBurstLines?: number;
  /** Characters a single line is cut to (as CloudWatch caps an event at 256 KB). @default 262144 */
  maxLineChars?: number;
}

/** What the quota says about one line. */
export type LogVerdict = "ok" | "invocation" | "function";

/** One function's token buckets. */
interface Bucket {
  bytes: number;
  lines: number;
  at: number;
  /** Lines dropped outside any invocation, not yet reported. */
  dropped: number;
}

/** One invocation's log budget. */
export class InvocationLogBudget {
  lines = 0;
  bytes = 0;
  /** Lines dropped, and the quota that dropped the first of them. */
  dropped = 0;
  reason: LogVerdict = "ok";
}

/** The log quotas of a server. */
export class LogQuota {
  private readonly o: Required<LogQuotaOptions>;
  private readonly buckets = new Map<string, Bucket>();
  /** Lines dropped by any quota since start (metrics). */
  droppedTotal = 0;

  constructor(options: LogQuotaOptions = {}) {
    this.o = {
      invocationLines: options.invocationLines ?? 10_000,
      invocationBytes: options.invocationBytes ?? 4 * 1024 * 1024,
      functionBytesPerSecond: options.functionBytesPerSecond ?? 1024 * 1024,
      functionBurstBytes: options.functionBurstBytes ?? 8 * 1024 * 1024,
      functionLinesPerSecond: options.functionLinesPerSecond ?? 2000,
      functionBurstLines: options.functionBurstLines ?? 20_000,
      maxLineChars: options.maxLineChars ?? 256 * 1024,
    };
  }

  /** Cuts a line to the per-line cap, saying so at its end. */
  cut(msg: string): string {
    return cutLogLine(msg, this.o.maxLineChars);
  }

  private bucket(fn: string, now: number): Bucket {
    let b = this.buckets.get(fn);
    if (!b) {
      b = { bytes: this.o.functionBurstBytes, lines: this.o.functionBurstLines, at: now, dropped: 0 };
      this.buckets.set(fn, b);
      return b;
    }
    const dt = Math.max(0, now - b.at) / 1000;
    b.bytes = Math.min(this.o.functionBurstBytes, b.bytes + dt * this.o.functionBytesPerSecond);
    b.lines = Math.min(this.o.functionBurstLines, b.lines + dt * this.o.functionLinesPerSecond);
    b.at = now;
    return b;
  }

  /**
   * Whether a line of `chars` characters of function `fn` (key: tenant/name) may be kept;
   * `budget` is its invocation's (none for lines outside invocations). Counts it if so,
   * counts the drop if not.
   */
  admit(fn: string, chars: number, now: number, budget?: InvocationLogBudget): LogVerdict {
    if (budget && (budget.lines >= this.o.invocationLines || budget.bytes + chars > this.o.invocationBytes)) {
      budget.dropped++;
      this.droppedTotal++;
      if (budget.reason === "ok") budget.reason = "invocation";
      return "invocation";
    }
    const b = this.bucket(fn, now);
    if (b.lines < 1 || b.bytes < chars) {
      this.droppedTotal++;
      if (budget) {
        budget.dropped++;
        if (budget.reason === "ok") budget.reason = "function";
      } else b.dropped++;
      return "function";
    }
    b.lines -= 1;
    b.bytes -= chars;
    if (budget) {
      budget.lines++;
      budget.bytes += chars;
    }
    return "ok";
  }

  /** Lines of `fn` dropped outside invocations since the last call (then reset). */
  takeDropped(fn: string): number {
    const b = this.buckets.get(fn);
    if (!b || b.dropped === 0) return 0;
    const n = b.dropped;
    b.dropped = 0;
    return n;
  }

  /** The marker line for `n` dropped lines. */
  marker(n: number, reason: LogVerdict): string {
    const o = this.o;
    const why =
      reason === "invocation"
        ? `quota per invocation: ${o.invocationLines} lines or ${o.invocationBytes} characters`
        : `quota per function: ${o.functionLinesPerSecond} lines/s and ${o.functionBytesPerSecond} characters/s, bursts of ${o.functionBurstLines} lines or ${o.functionBurstBytes} characters`;
    return `[nimbus] ${n} log line${n === 1 ? "" : "s"} dropped (${why})`;
  }

  /** Forgets functions that have been quiet (their buckets are full again) to bound memory. */
  sweep(now: number): void {
    for (const [fn, b] of this.buckets) {
      const full = this.bucket(fn, now);
      if (
        b.dropped === 0 &&
        full.bytes >= this.o.functionBurstBytes &&
        full.lines >= this.o.functionBurstLines
      ) {
        this.buckets.delete(fn);
      }
    }
  }
}
