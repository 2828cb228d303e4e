/**
 * Test helpers: our own Mosquitto and nats-server (JetStream) on random loopback ports with
 * temporary data directories, which a test may stop, kill and restart (the shared brokers on
 * 1883/4222 are never touched). Persistent state survives a restart: Mosquitto saves its
 * sessions on SIGTERM; JetStream keeps its file store.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A broker process a test owns. */
export interface OwnBroker {
  port: number;
  url: string;
  /** Starts it (again) on the same port and data directory; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (SIGTERM, or SIGKILL) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops it and removes its data directory. */
  dispose(): Promise<void>;
}

/** A free loopback port. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export async function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

function ownBroker(scheme: string, port: number, dir: string, command: () => [string, string[]]): OwnBroker {
  let proc: ChildProcess | undefined;
  let log = "";
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((r) => {
      p.once("exit", () => r());
      p.kill(signal);
    });
  };
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    async start() {
      const [cmd, args] = command();
      const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
      proc = p;
      p.stdout!.on("data", (d: Buffer) => {
        log = (log + d.toString()).slice(-4000);
      });
      p.stderr!.on("data", (d: Buffer) => {
        log = (log + d.toString()).slice(-4000);
      });
      const end = Date.now() + 20_000;
      while (!(await reachable(port))) {
        if (p.exitCode !== null || Date.now() > end) {
          await stop("SIGKILL");
          throw new Error(`${cmd} did not start on ${port}: ${log}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop,
    async dispose() {
      await stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Our own Mosquitto (persistence on, loopback only). Not started yet. `extra` is appended to
 * its configuration (e.g. `max_queued_messages 0` so a slow subscriber loses nothing).
 */
export async function ownMosquitto(extra = ""): Promise<OwnBroker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "nimbus-mosq-"));
  const conf = join(dir, "mosquitto.conf");
  const user = process.getuid?.() === 0 ? "user root\n" : "";
  writeFileSync(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\n${user}${extra}`,
  );
  return ownBroker("mqtt", port, dir, () => ["mosquitto", ["-c", conf]]);
}

/** Our own nats-server with JetStream (file store in a temp dir, loopback only). Not started yet. */
export async function ownNats(): Promise<OwnBroker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "nimbus-nats-"));
  return ownBroker("nats", port, dir, () => [
    "nats-server",
    ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
  ]);
}

/** Polls `f` every 200 ms until it returns a value (or throws after `ms`, with the last error). */
export async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
