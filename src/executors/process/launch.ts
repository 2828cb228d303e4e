/**
 * How an instance process is started: join its cgroups (as root), drop to the unprivileged
 * instance uid, then exec bubblewrap (whose user namespace thus maps the sandbox uid to that
 * unprivileged uid, never to host root) or, without the sandbox, the runtime directly.
 */
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bwrapOptions, type Cgroup, dropPrefix, type Protections, type SandboxMounts } from "./sandbox.ts";

/** The file descriptor bwrap reads its options from (`--args 4`). */
export const ARGS_FD = 4;
/** The file descriptor bwrap reads the compiled seccomp filter from (`--seccomp 5`). */
export const SECCOMP_FD = 5;

/**
 * Closes every inherited file descriptor but stdin/stdout/stderr, the control channel
 * (fd 3), bwrap's options (fd 4) and seccomp filter (fd 5), then execs the rest: a descriptor the platform itself
 * inherited without close-on-exec (a launcher's pipe) must not reach the sandbox. bash,
 * because dash cannot name descriptors above 9.
 */
const CLOSE_FDS = `for f in /proc/self/fd/*; do f=\${f##*/}; case $f in 0|1|2|3|4|5) ;; *) eval "exec $f>&-" 2>/dev/null;; esac; done; exec "$@"`;

function closeFdsPrefix(): string[] {
  return existsSync("/bin/bash") ? ["/bin/bash", "-c", CLOSE_FDS, "nimbus-launch"] : [];
}

/**
 * The node binary at a neutral path inside the run directory (a hard link, else a copy), so
 * that the sandbox's mount table names no project path.
 */
export function linkNode(runDir: string): string {
  const dir = join(runDir, "node");
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const dest = join(dir, "node");
  if (!existsSync(dest)) {
    try {
      linkSync(process.execPath, dest);
    } catch {
      copyFileSync(process.execPath, dest);
      chmodSync(dest, 0o755);
    }
  }
  return dir;
}

/**
 * Mirrors the directory tree `src` at `dest` with hard links (copies across file systems), so
 * that a sandbox can bind it from the run directory: bubblewrap opens a bind source as the
 * instances' unprivileged uid, which cannot traverse an installation inside a 0700 directory
 * (e.g. a checkout in a home directory or a `mktemp -d`). Files keep their own permissions.
 * Returns `dest`.
 */
export function linkTree(src: string, dest: string): string {
  mkdirSync(dest, { recursive: true, mode: 0o755 });
  for (const name of readdirSync(src)) {
    const from = join(src, name);
    const to = join(dest, name);
    if (existsSync(to)) continue;
    const st = lstatSync(from);
    if (st.isDirectory()) linkTree(from, to);
    else if (st.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
    else if (st.isFile()) {
      try {
        linkSync(from, to);
      } catch {
        copyFileSync(from, to);
        chmodSync(to, st.mode & 0o755);
      }
    }
  }
  return dest;
}

/** A command ready for the spawner. */
export interface LaunchCommand {
  cmd: string;
  args: string[];
  /**
   * NUL-separated bwrap options to write to fd {@link ARGS_FD} (then closed), or undefined.
   * bwrap reads and closes it, so nothing but the command shows in the sandbox's
   * `/proc/1/cmdline`.
   */
  argsData?: string;
  /** The compiled seccomp filter to write to fd {@link SECCOMP_FD}, or undefined. */
  seccomp?: Buffer;
}

/**
 * Builds the command for one instance.
 * @param inside argv inside the sandbox (neutral paths)
 * @param onHost argv when there is no sandbox (host paths)
 */
export function launchCommand(
  p: Protections,
  mounts: SandboxMounts,
  inside: string[],
  onHost: string[],
  cgroup: Cgroup | undefined,
  seccomp?: Buffer,
): LaunchCommand {
  const drop = [...closeFdsPrefix(), ...dropPrefix(p)];
  let argv: string[];
  let argsData: string | undefined;
  if (p.bwrap && p.bwrapPath) {
    argv = [...drop, p.bwrapPath, "--args", String(ARGS_FD), "--", ...inside];
    const opts = bwrapOptions(mounts);
    if (seccomp) opts.push("--seccomp", String(SECCOMP_FD));
    argsData = `${opts.join("\0")}\0`;
  } else {
    argv = [...drop, ...onHost];
  }
  let cmd = argv[0]!;
  let args = argv.slice(1);
  // Joining the cgroups comes first, while still root: the unprivileged uid may not write
  // to cgroup.procs. The drop and the sandbox follow by exec, so every process of the
  // instance starts inside its cgroups.
  if (cgroup) ({ cmd, args } = cgroup.wrap(cmd, args));
  return { cmd, args, argsData, seccomp: p.bwrap && p.bwrapPath ? seccomp : undefined };
}

/**
 * Creates the run directory: what instances must read (the built runtime, their code slot,
 * their egress sockets) lives here, outside the data directory, which stays root-only.
 * The directory is traversable but not listable: every slot has an unguessable name.
 */
export function makeRunDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-run-"));
  chmodSync(dir, 0o711);
  for (const sub of ["slots", "egress", "isolate-hosts"]) mkdirSync(join(dir, sub), { mode: 0o711 });
  return dir;
}

/** A fresh, unguessable directory under `parent`, readable by the instance uid. */
export function makeSlot(parent: string, prefix: string): string {
  const dir = join(parent, `${prefix}-${randomBytes(12).toString("hex")}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  return dir;
}
