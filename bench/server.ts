/**
 * A benchmark target, run as its own process so that it does not share an event loop with
 * the load generator (bench/run.ts pins it to another core):
 *
 * - `server.ts nimbus '<json ServeOptions subset>'` starts the whole platform (`startServer`);
 * - `server.ts bare` starts a bare `node:http` server answering what bench/functions/hello.ts
 *   answers, the baseline Nimbus is compared with.
 *
 * Prints one line `READY <json>` on stdout when listening; stops on SIGTERM, SIGINT, or when
 * its stdin closes (the parent went away).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startServer } from "../src/server.ts";

/** What a target reports when it is listening. */
export interface TargetInfo {
  url: string;
  pid: number;
  /** Nimbus only. */
  adminKey?: string;
  /** Nimbus only: the sandbox protections in force. */
  protections?: unknown;
}

/** Options of the Nimbus target (a subset of `ServeOptions`). */
export interface NimbusTargetOptions {
  dataDir: string;
  /** Pre-started runtimes per memory size; 0 makes every cold start spawn a fresh process. */
  prewarm: number;
  reapIntervalMs: number;
  /** Run instances without bubblewrap and cgroups (to measure what the sandbox costs). */
  noSandbox?: boolean;
  /** Isolate executor's default isolation (`--isolation`). */
  isolation?: "isolate" | "context";
}

const HELLO = Buffer.from("Hello, world!\n");

async function main(): Promise<void> {
  const mode = process.argv[2];
  let stop: () => Promise<void>;
  let info: TargetInfo;
  if (mode === "bare") {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": HELLO.length });
      res.end(HELLO);
    });
    // The same keep-alive settings as the Nimbus server, so neither side closes connections earlier.
    server.keepAliveTimeout = 5_000;
    server.headersTimeout = 10_000;
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
    const port = (server.address() as AddressInfo).port;
    info = { url: `http://127.0.0.1:${port}`, pid: process.pid };
    stop = async () => {
      server.close();
      server.closeAllConnections();
    };
  } else if (mode === "nimbus") {
    const opts = JSON.parse(process.argv[3] ?? "{}") as NimbusTargetOptions;
    const running = await startServer({
      port: 0,
      host: "127.0.0.1",
      dataDir: opts.dataDir,
      prewarm: opts.prewarm,
      reapIntervalMs: opts.reapIntervalMs,
      noSandbox: opts.noSandbox ?? false,
      // NIMBUS_BENCH_METRICS=off measures the platform without its Prometheus metrics.
      metrics: process.env.NIMBUS_BENCH_METRICS !== "off",
      isolation: opts.isolation,
      log: (m) => process.stderr.write(`${m}\n`),
    });
    info = {
      url: running.url,
      pid: process.pid,
      adminKey: running.adminKey,
      protections: running.protections,
    };
    stop = () => running.close(2_000);
  } else {
    throw new Error(`usage: server.ts nimbus '<json>' | server.ts bare (got ${JSON.stringify(mode)})`);
  }

  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    // A stop that hangs must not keep the benchmark waiting.
    setTimeout(() => process.exit(1), 5_000).unref();
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`bench server: stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  process.stdin.on("end", shutdown);
  process.stdin.on("error", shutdown);
  process.stdin.resume();
  process.stdout.write(`READY ${JSON.stringify(info)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench server failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
