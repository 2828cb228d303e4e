/**
 * The platform's end of the spawner (see spawner.ts): starts runtime processes without
 * forking the gateway, and gives each back as a {@link SpawnedChild}.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const SPAWNER = join(dirname(fileURLToPath(import.meta.url)), "spawner.ts");

/**
 * A runtime process started by the spawner. Events: `pipe` (name: "fd3" | "stdout" |
 * "stderr", socket), `exit` (code, signal), `error` (message).
 */
export class SpawnedChild extends EventEmitter {
  readonly id: number;
  /** Its process id on the host (0 until the spawner said it): the sandbox's outermost process. */
  pid = 0;
  private readonly client: SpawnerClient;

  constructor(client: SpawnerClient, id: number) {
    super();
    this.client = client;
    this.id = id;
  }

  /** Sends a signal to the process. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.client.kill(this.id, signal);
  }
}

/** The spawner process and the children it started. */
export class SpawnerClient {
  private proc: ChildProcess | undefined;
  private readonly children = new Map<number, SpawnedChild>();
  private seq = 0;
  private closed = false;

  private ensure(): ChildProcess {
    if (this.proc && this.proc.exitCode === null && this.proc.connected) return this.proc;
    const proc = spawn(process.execPath, ["--disable-warning=ExperimentalWarning", SPAWNER], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: {},
    });
    proc.on(
      "message",
      (
        m: {
          op: string;
          id: number;
          name?: string;
          pid?: number;
          code?: number | null;
          signal?: string;
          message?: string;
        },
        handle?: Socket,
      ) => {
        const child = this.children.get(m.id);
        if (!child) {
          handle?.destroy();
          return;
        }
        if (m.op === "pipe" && handle) child.emit("pipe", m.name, handle);
        else if (m.op === "pid" && typeof m.pid === "number") child.pid = m.pid;
        else if (m.op === "exit") {
          this.children.delete(m.id);
          child.emit("exit", m.code ?? null, m.signal ?? null);
        } else if (m.op === "error") {
          this.children.delete(m.id);
          child.emit("error", m.message);
        }
      },
    );
    proc.on("exit", () => {
      // The spawner died: its runtimes die with it (bwrap --die-with-parent, and a runtime
      // exits when its socket closes). Report them gone; the next spawn starts a new spawner.
      for (const [id, child] of this.children) {
        this.children.delete(id);
        child.emit("exit", null, "SIGKILL");
      }
      if (this.proc === proc) this.proc = undefined;
    });
    // The IPC channel must not keep the platform alive on its own.
    proc.channel?.unref();
    this.proc = proc;
    return proc;
  }

  /**
   * Starts `cmd args` with fd 3, stdout and stderr as pipes and an empty environment;
   * `argsData`, when given, is written to the child's fd 4 and `seccomp` to fd 5 (then closed).
   */
  spawn(cmd: string, args: string[], argsData?: string, seccomp?: Buffer): SpawnedChild {
    if (this.closed) throw new Error("the spawner is closed");
    const id = ++this.seq;
    const child = new SpawnedChild(this, id);
    this.children.set(id, child);
    this.ensure().send({ op: "spawn", id, cmd, args, argsData, seccomp: seccomp?.toString("base64") });
    return child;
  }

  kill(id: number, signal: NodeJS.Signals): void {
    if (this.children.has(id)) this.proc?.send({ op: "kill", id, signal });
  }

  /** Stops the spawner (and with it any runtime still running). */
  close(): void {
    this.closed = true;
    this.proc?.disconnect();
  }
}
