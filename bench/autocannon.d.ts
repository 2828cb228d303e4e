/**
 * The part of autocannon's library API the benchmarks use (the package ships no types).
 * See https://github.com/mcollina/autocannon#api.
 */
declare module "autocannon" {
  import type { EventEmitter } from "node:events";

  /** Options of one run. */
  export interface Options {
    url: string;
    /** Concurrent connections. @default 10 */
    connections?: number;
    /** Seconds to run. @default 10 */
    duration?: number;
    /** Requests in flight per connection. @default 1 */
    pipelining?: number;
    /** Seconds before a request counts as timed out. @default 10 */
    timeout?: number;
    method?: string;
    headers?: Record<string, string>;
    /** Request body. */
    body?: string;
    /** Stop after this many requests in total. */
    amount?: number;
  }

  /** A percentile summary as autocannon reports it. */
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p90: number;
    p99: number;
    p99_9: number;
  }

  /** The result of one run. */
  export interface Result {
    url: string;
    connections: number;
    /** Seconds the run took. */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    resets: number;
    "2xx": number;
    /** Milliseconds, whole-millisecond resolution. */
    latency: Histogram;
    /** Requests per second, sampled once a second. */
    requests: Histogram & { sent: number };
    throughput: Histogram;
  }

  /** A running benchmark: emits `response` (client, statusCode, resBytes, responseTimeMs) per response. */
  export interface Instance extends EventEmitter {
    stop(): void;
  }

  function autocannon(opts: Options, cb: (err: Error | null, result: Result) => void): Instance;
  export default autocannon;
}
