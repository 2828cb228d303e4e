/**
 * Test helper (as nats.js's `test_helpers/launcher.ts`): starts a real `nats-server`
 * cluster with JetStream on random loopback ports and temp store directories, waits until
 * it elects a JetStream meta leader, and stops or SIGKILLs its servers.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

/** The nats-server binary (Debian's package puts it here). */
export const NATS_SERVER = process.env.NATS_SERVER ?? "/usr/sbin/nats-server";

/** Why a cluster cannot be started here, or undefined when it can (a missing binary fails in CI). */
export function natsServerUnavailable(): string | undefined {
  if (existsSync(NATS_SERVER)) return undefined;
  if (process.env.CI === "true")
    throw new Error(`${NATS_SERVER} is required in CI (apt-get install nats-server)`);
  return `no nats-server at ${NATS_SERVER} (set NATS_SERVER or install Debian's nats-server)`;
}

/** The version `nats-server --version` reports, e.g. `2.9.10`. */
export function natsServerVersion(): string {
  return /v?(\d+\.\d+\.\d+)/.exec(execFileSync(NATS_SERVER, ["--version"]).toString())?.[1] ?? "unknown";
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One server of the cluster. */
export interface ClusterServer {
  name: string;
  port: number;
  url: string;
  proc: ChildProcess | undefined;
}

/** A running cluster. */
export interface NatsCluster {
  servers: ClusterServer[];
  /** Client URLs of every server. */
  urls: string[];
  /** SIGKILLs one server (no shutdown, no flush). */
  kill(name: string): void;
  /** Starts a killed server again with its store directory. */
  restart(name: string): Promise<void>;
  /** Stops everything and removes the store directories. */
  stop(): Promise<void>;
}

/** Starts `n` clustered servers with JetStream and waits for the JetStream meta leader. */
export async function startNatsCluster(n = 3): Promise<NatsCluster> {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-nats-"));
  const clusterPorts = await Promise.all(Array.from({ length: n }, freePort));
  const servers: ClusterServer[] = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    servers.push({ name: `n${i + 1}`, port, url: `nats://127.0.0.1:${port}`, proc: undefined });
  }
  const configs = servers.map((s, i) => {
    const file = join(dir, `${s.name}.conf`);
    const routes = clusterPorts.map((p) => `nats-route://127.0.0.1:${p}`).join(", ");
    writeFileSync(
      file,
      `server_name: ${s.name}
listen: 127.0.0.1:${s.port}
jetstream { store_dir: "${join(dir, s.name)}", max_memory_store: 64MB, max_file_store: 1GB }
cluster { name: nimbus-test, listen: 127.0.0.1:${clusterPorts[i]}, routes: [${routes}] }
`,
    );
    return file;
  });
  const launch = (i: number) => {
    const s = servers[i]!;
    s.proc = spawn(NATS_SERVER, ["-c", configs[i]!], { stdio: "ignore" });
    s.proc.unref();
  };
  servers.forEach((_, i) => {
    launch(i);
  });
  // A test process ended by a signal must not leave servers behind.
  const killAll = () => {
    for (const s of servers)
      if (s.proc?.exitCode === null && s.proc.signalCode === null) s.proc.kill("SIGKILL");
  };
  const onSignal = () => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("exit", killAll);
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  const stopAll = async () => {
    process.off("exit", killAll);
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    for (const s of servers) {
      if (s.proc && s.proc.exitCode === null && s.proc.signalCode === null) {
        const gone = new Promise((r) => s.proc!.once("exit", r));
        s.proc.kill("SIGTERM");
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
        if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill("SIGKILL");
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForMetaLeader(
      servers.map((s) => s.url),
      n,
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    servers,
    urls: servers.map((s) => s.url),
    kill(name) {
      const s = servers.find((x) => x.name === name);
      if (!s?.proc) throw new Error(`no running server ${name}`);
      s.proc.kill("SIGKILL");
    },
    async restart(name) {
      const i = servers.findIndex((x) => x.name === name);
      if (i < 0) throw new Error(`no server ${name}`);
      launch(i);
      await waitForMetaLeader([servers[i]!.url]);
    },
    stop: stopAll,
  };
}

/**
 * Waits (up to 30 s) until a JetStream API call through `urls` succeeds (the meta leader is
 * elected) and, with `replicas`, until a stream with that many replicas can be placed.
 */
async function waitForMetaLeader(urls: string[], replicas = 1): Promise<void> {
  const until = Date.now() + 30_000;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const nc = await connect({ servers: urls, timeout: 1000, maxReconnectAttempts: 0 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 1000 });
        await jsm.getAccountInfo();
        if (replicas > 1) {
          // Every server has joined JetStream once a stream with a replica on each can be placed.
          const probe = `READY_${Date.now()}`;
          await jsm.streams.add({ name: probe, subjects: [`ready.${probe}`], num_replicas: replicas });
          await jsm.streams.delete(probe);
        }
        return;
      } finally {
        await nc.close();
      }
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`the NATS cluster did not elect a JetStream leader in 30 s: ${String(last)}`);
}

/** The shared nats-server of the development machines (see STYLE.md). */
export const SHARED_NATS = "nats://127.0.0.1:4222";

/**
 * Why tests cannot use the shared nats-server, or false when they can. Absent on a laptop,
 * tests skip saying so; with CI=true they fail.
 */
export async function sharedNatsUnavailable(): Promise<string | false> {
  const up = await new Promise<boolean>((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port: 4222 }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
  if (up) return false;
  if (process.env.CI === "true") throw new Error("nats-server is not running at 127.0.0.1:4222 and CI=true");
  return "nats-server is not running at 127.0.0.1:4222 (see STYLE.md for the command)";
}
