/**
 * The spawner: a small helper process that starts runtime processes for the platform.
 * `spawn()` forks the calling process, which blocks its event loop for milliseconds (the
 * larger the process, the longer); forking from this small process instead keeps the
 * gateway's event loop free. It hands the child's pipes back over the IPC channel.
 *
 * Protocol (Node IPC, JSON): in: `{op:"spawn", id, cmd, args, argsData?, seccomp?}` (argsData is
 * written to the child's fd 4, seccomp — base64 — to fd 5, then closed: bwrap reads its
 * options and its seccomp filter there), `{op:"kill", id, signal}`;
 * out: `{op:"pipe", id, name: "fd3"|"stdout"|"stderr"}` with the pipe as the sent handle,
 * `{op:"pid", id, pid}`, `{op:"exit", id, code, signal}`, `{op:"error", id, message}`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Socket } from "node:net";

const children = new Map<number, ChildProcess>();

function send(msg: object, handle?: Socket): void {
  if (process.connected) process.send!(msg, handle);
}

process.on(
  "message",
  (m: {
    op: string;
    id: number;
    cmd?: string;
    args?: string[];
    argsData?: string;
    seccomp?: string;
    signal?: NodeJS.Signals;
  }) => {
    if (m.op === "spawn") {
      let child: ChildProcess;
      try {
        const stdio: ("ignore" | "pipe")[] = ["ignore", "pipe", "pipe", "pipe"];
        if (m.argsData !== undefined) stdio.push("pipe");
        if (m.seccomp !== undefined) stdio.push("pipe");
        child = spawn(m.cmd!, m.args!, { stdio, env: {} });
      } catch (err) {
        send({ op: "error", id: m.id, message: (err as Error).message });
        return;
      }
      // Never read from the pipes here: Node starts reading a new pipe at once, and whatever
      // it read before the handle is sent (a fast runtime's READY frame) would be dropped.
      // Stopping in the same tick as the spawn means nothing was read yet.
      for (const pipe of [child.stdio[3], child.stdout, child.stderr]) {
        (pipe as unknown as { _handle?: { readStop(): number } })._handle?.readStop();
      }
      if (m.argsData !== undefined) {
        const w = child.stdio[4] as Socket;
        w.on("error", () => {});
        w.end(m.argsData);
      }
      if (m.seccomp !== undefined) {
        const w = (child.stdio as unknown as Socket[])[5]!;
        w.on("error", () => {});
        w.end(Buffer.from(m.seccomp, "base64"));
      }
      children.set(m.id, child);
      child.on("error", (err) => send({ op: "error", id: m.id, message: err.message }));
      child.on("exit", (code, signal) => {
        children.delete(m.id);
        send({ op: "exit", id: m.id, code, signal });
      });
      // Its pid, for the platform's RSS metric (the sandbox's outermost process: bwrap, or the runtime).
      if (child.pid !== undefined) send({ op: "pid", id: m.id, pid: child.pid });
      send({ op: "pipe", id: m.id, name: "fd3" }, child.stdio[3] as Socket);
      send({ op: "pipe", id: m.id, name: "stdout" }, child.stdout as Socket);
      send({ op: "pipe", id: m.id, name: "stderr" }, child.stderr as Socket);
    } else if (m.op === "kill") {
      children.get(m.id)?.kill(m.signal ?? "SIGKILL");
    }
  },
);

// The platform went away: take every runtime down with us.
function orphaned(): void {
  for (const c of children.values()) c.kill("SIGKILL");
  process.exit(0);
}
process.on("disconnect", orphaned);
// A SIGKILLed platform did not always end the IPC channel in time (seen under load: the
// spawner lived on with its runtimes, holding the platform's stdout open, so whoever
// waited for that pipe to close waited forever). Being re-parented says it for certain.
const platformPid = process.ppid;
setInterval(() => {
  if (process.ppid === platformPid) return;
  for (const c of children.values()) c.kill("SIGKILL");
  // Not process.exit(): if the disconnect path above already ran and did not end this
  // process, exiting the same way again would not either.
  process.kill(process.pid, "SIGKILL");
}, 500).unref();
