/**
 * The process sandbox: bubblewrap namespaces plus cgroup (v1 or v2) limits, each used when
 * the host allows it. What is missing is reported, never silently skipped.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  accessSync,
  close,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmdirSync,
  rmSync,
  statSync,
  write,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { seccompProgram } from "./seccomp.ts";

/** Which protections are active on this host. */
export interface Protections {
  /** bubblewrap namespaces (filesystem, pid, ipc, uts, user, network) are used. */
  bwrap: boolean;
  /** Absolute path of the bwrap binary used, or null. */
  bwrapPath: string | null;
  /** cgroup version whose controllers Nimbus can write, or null. */
  cgroups: "v1" | "v2" | null;
  memoryLimit: boolean;
  cpuLimit: boolean;
  pidsLimit: boolean;
  /**
   * The unprivileged uid/gid instances run as on the host (the platform runs as root), or
   * null when the platform itself is unprivileged. Inside bubblewrap the sandbox uid maps to
   * this uid, never to host root.
   */
  runAs: { uid: number; gid: number } | null;
  /** Absolute path of setpriv (drops to `runAs` after joining the cgroups), or null. */
  setprivPath: string | null;
  /** A seccomp filter denies the system calls a function never needs (process executor). */
  seccomp: boolean;
  /** Every protection is on: bubblewrap and the memory, CPU and pids cgroup limits. */
  sandboxed: boolean;
  /**
   * An instance's processes can be frozen between invocations (v1 `freezer` controller,
   * v2 `cgroup.freeze`), as Lambda freezes idle execution environments.
   */
  freezer: boolean;
  /** The platform can read an instance's CPU time (v1 `cpuacct.usage`, v2 `cpu.stat`). */
  cpuAccounting: boolean;
  /** Human-readable list of protections that are OFF, empty when fully sandboxed. */
  off: string[];
}

/** Limits applied to one instance's cgroup. */
export interface CgroupLimits {
  memoryMB: number;
  /** CPU cap in cores (e.g. 1 = one full core). */
  cpus: number;
  pids: number;
}

const V1_ROOT = "/sys/fs/cgroup";
/** cpuacct.usage (a number) or the head of v2's cpu.stat (usage_usec comes first). */
const USAGE_BUF = Buffer.alloc(256);
const GROUP = "nimbus";
/** The host uid/gid instances run as when the platform runs as root (`nobody`). */
export const INSTANCE_UID = 65534;

function canWrite(dir: string): boolean {
  const probe = join(dir, `${GROUP}-probe-${process.pid}`);
  try {
    mkdirSync(probe, { recursive: false });
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

/** Finds an executable on $PATH (or the standard directories when $PATH is unset). */
function which(name: string): string | null {
  const dirs = (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":").filter(Boolean);
  for (const d of dirs) {
    const f = join(d, name);
    try {
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Runs bwrap the way instances run it (unprivileged, own network namespace) once. */
function bwrapWorks(bwrap: string, drop: string[]): boolean {
  try {
    const argv = [
      ...drop,
      bwrap,
      "--ro-bind",
      "/",
      "/",
      "--unshare-all",
      "--unshare-user",
      "--uid",
      "1000",
      "--gid",
      "1000",
      "--disable-userns",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "true",
    ];
    execFileSync(argv[0]!, argv.slice(1), { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Runs bwrap once with the seccomp filter loaded (from a file opened as fd 5). */
function seccompWorks(bwrap: string, drop: string[]): boolean {
  const program = seccompProgram();
  if (!program) return false;
  const file = join(tmpdir(), `nimbus-seccomp-${process.pid}-${Date.now()}`);
  let fd: number | undefined;
  try {
    writeFileSync(file, program);
    fd = openSync(file, "r");
    const argv = [
      ...drop,
      bwrap,
      "--ro-bind",
      "/",
      "/",
      "--unshare-all",
      "--unshare-user",
      "--seccomp",
      "5",
      "true",
    ];
    const r = spawnSync(argv[0]!, argv.slice(1), {
      stdio: ["ignore", "ignore", "ignore", "ignore", "ignore", fd],
      timeout: 10_000,
    });
    return r.status === 0;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(file, { force: true });
  }
}

/** The command prefix that drops root to `runAs` (empty when nothing to drop). */
export function dropPrefix(p: Pick<Protections, "runAs" | "setprivPath">): string[] {
  if (!p.runAs || !p.setprivPath) return [];
  return [
    p.setprivPath,
    `--reuid=${p.runAs.uid}`,
    `--regid=${p.runAs.gid}`,
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
  ];
}

/** How {@link detectProtections} looks at the host. */
export interface DetectOptions {
  /** Turn the sandbox off on purpose (`--no-sandbox`, NIMBUS_SANDBOX=off). @default false */
  disable?: boolean;
  /**
   * The bwrap binary. @default $NIMBUS_BWRAP, else `bwrap` on $PATH
   * @example "/nonexistent" (tests simulate a host without bubblewrap)
   */
  bwrapPath?: string;
}

/**
 * Detects what the host allows. A disabled sandbox is reported like a missing protection.
 * When the platform runs as root, instances always drop to an unprivileged uid (sandbox or
 * not), so that they can read neither the data directory nor the admin key.
 */
export function detectProtections(opts: DetectOptions | boolean = {}): Protections {
  const o: DetectOptions = typeof opts === "boolean" ? { disable: opts } : opts;
  const disable = o.disable ?? false;
  const off: string[] = [];
  const root = process.getuid?.() === 0;
  const setprivPath = root ? which("setpriv") : null;
  const runAs = root ? { uid: INSTANCE_UID, gid: INSTANCE_UID } : null;
  if (root && !setprivPath) {
    off.push("setpriv not found: instances cannot drop root (apt-get install util-linux)");
  }
  const drop = dropPrefix({ runAs, setprivPath });
  let bwrapPath: string | null = null;
  if (!disable) {
    const want = o.bwrapPath ?? process.env.NIMBUS_BWRAP ?? which("bwrap");
    if (want && (!root || setprivPath) && bwrapWorks(want, drop)) bwrapPath = want;
  }
  const bwrap = bwrapPath !== null;
  const seccomp = bwrapPath !== null && seccompWorks(bwrapPath, drop);
  if (bwrap && !seccomp) off.push("seccomp filter (this kernel or architecture does not take it)");
  if (!bwrap) {
    off.push(
      disable
        ? "bubblewrap disabled on purpose (--no-sandbox / NIMBUS_SANDBOX=off): functions are not isolated from the host"
        : "bubblewrap (bwrap) not found or not usable: functions run without filesystem/pid/network isolation (apt-get install bubblewrap)",
    );
  }
  let cgroups: Protections["cgroups"] = null;
  let memoryLimit = false;
  let cpuLimit = false;
  let pidsLimit = false;
  let freezer = false;
  let cpuAccounting = false;
  if (!disable) {
    if (existsSync(join(V1_ROOT, "cgroup.controllers"))) {
      const controllers = readFileSync(join(V1_ROOT, "cgroup.controllers"), "utf8");
      if (canWrite(V1_ROOT)) {
        cgroups = "v2";
        try {
          writeFileSync(join(V1_ROOT, "cgroup.subtree_control"), "+memory +cpu +pids");
        } catch {
          // Already enabled, or not delegable; checked per controller below.
        }
        memoryLimit = controllers.includes("memory");
        cpuLimit = controllers.includes("cpu");
        pidsLimit = controllers.includes("pids");
        // cgroup.freeze and cpu.stat exist in every non-root v2 cgroup (kernel 5.2+ for freeze).
        freezer = kernelAtLeast(5, 2);
        cpuAccounting = true;
      }
    } else {
      memoryLimit = existsSync(join(V1_ROOT, "memory")) && canWrite(join(V1_ROOT, "memory"));
      cpuLimit = existsSync(join(V1_ROOT, "cpu")) && canWrite(join(V1_ROOT, "cpu"));
      pidsLimit = existsSync(join(V1_ROOT, "pids")) && canWrite(join(V1_ROOT, "pids"));
      freezer = existsSync(join(V1_ROOT, "freezer")) && canWrite(join(V1_ROOT, "freezer"));
      cpuAccounting = existsSync(join(V1_ROOT, "cpuacct")) && canWrite(join(V1_ROOT, "cpuacct"));
      if (memoryLimit || cpuLimit || pidsLimit || freezer || cpuAccounting) cgroups = "v1";
    }
  }
  if (!memoryLimit) off.push("cgroup memory limit (only V8's --max-old-space-size bounds memory)");
  if (!cpuLimit) off.push("cgroup CPU limit");
  if (!pidsLimit) off.push("cgroup process-count limit");
  if (!freezer) off.push("cgroup freezer (idle instances are not frozen and may run unmetered)");
  if (!cpuAccounting) off.push("cgroup CPU accounting (CPU ms come from the instance's own figures)");
  const sandboxed = bwrap && memoryLimit && cpuLimit && pidsLimit && (!root || setprivPath !== null);
  return {
    bwrap,
    bwrapPath,
    cgroups,
    memoryLimit,
    cpuLimit,
    pidsLimit,
    freezer,
    cpuAccounting,
    seccomp,
    runAs: setprivPath ? runAs : null,
    setprivPath,
    sandboxed,
    off,
  };
}

function kernelAtLeast(major: number, minor: number): boolean {
  try {
    const m = /^(\d+)\.(\d+)/.exec(readFileSync("/proc/sys/kernel/osrelease", "utf8"));
    if (!m) return false;
    const [a, b] = [Number(m[1]), Number(m[2])];
    return a > major || (a === major && b >= minor);
  } catch {
    return false;
  }
}

/** One instance's cgroup(s); `procsFiles` are written with the instance's pid. */
export class Cgroup {
  readonly dirs: string[] = [];
  readonly procsFiles: string[] = [];
  private readonly version: "v1" | "v2";
  private readonly memoryDir: string | undefined;
  private readonly cpuDir: string | undefined;
  /** The file whose content freezes/thaws (v1 `freezer.state`, v2 `cgroup.freeze`). */
  private readonly freezeFile: string | undefined;
  /** The file holding the group's CPU time (v1 `cpuacct.usage` ns, v2 `cpu.stat` usage_usec). */
  private readonly usageFile: string | undefined;
  /** The freezer state last written, the one wanted, and whether a write is under way. */
  private isFrozen = false;
  private wantFrozen = false;
  private writing = false;
  private readonly appliedWaiters: (() => void)[] = [];
  private freezeFd: number | undefined;
  private usageFd: number | undefined;
  private removed = false;

  constructor(p: Protections, name: string, limits: CgroupLimits) {
    if (!p.cgroups) throw new Error("cgroups are not available");
    this.version = p.cgroups;
    const memBytes = String(limits.memoryMB * 1024 * 1024);
    const period = 100_000;
    const quota = String(Math.round(limits.cpus * period));
    if (p.cgroups === "v2") {
      const dir = join(V1_ROOT, GROUP, name);
      mkdirSync(dir, { recursive: true });
      this.dirs.push(dir);
      if (p.memoryLimit) {
        writeFileSync(join(dir, "memory.max"), memBytes);
        tryWrite(join(dir, "memory.swap.max"), "0");
      }
      if (p.cpuLimit) writeFileSync(join(dir, "cpu.max"), `${quota} ${period}`);
      if (p.pidsLimit) writeFileSync(join(dir, "pids.max"), String(limits.pids));
      this.procsFiles.push(join(dir, "cgroup.procs"));
      this.memoryDir = dir;
      this.cpuDir = dir;
      if (p.freezer) this.freezeFile = join(dir, "cgroup.freeze");
      if (p.cpuAccounting) this.usageFile = join(dir, "cpu.stat");
    } else {
      const mk = (controller: string): string => {
        const dir = join(V1_ROOT, controller, GROUP, name);
        mkdirSync(dir, { recursive: true });
        this.dirs.push(dir);
        this.procsFiles.push(join(dir, "cgroup.procs"));
        return dir;
      };
      if (p.memoryLimit) {
        const dir = mk("memory");
        writeFileSync(join(dir, "memory.limit_in_bytes"), memBytes);
        tryWrite(join(dir, "memory.memsw.limit_in_bytes"), memBytes);
        this.memoryDir = dir;
      }
      if (p.cpuLimit) {
        const dir = mk("cpu");
        writeFileSync(join(dir, "cpu.cfs_period_us"), String(period));
        writeFileSync(join(dir, "cpu.cfs_quota_us"), quota);
        this.cpuDir = dir;
      }
      if (p.pidsLimit) writeFileSync(join(mk("pids"), "pids.max"), String(limits.pids));
      // cpu and cpuacct may be one hierarchy (cpu,cpuacct) or two: a second mkdir of the
      // same directory is harmless, and its cgroup.procs is written twice.
      if (p.cpuAccounting) {
        const shared = join(V1_ROOT, "cpuacct", GROUP, name);
        const dir = existsSync(shared) ? shared : mk("cpuacct");
        this.usageFile = join(dir, "cpuacct.usage");
      }
      if (p.freezer) this.freezeFile = join(mk("freezer"), "freezer.state");
    }
  }

  /** Whether the freezer can be used for this group. */
  get canFreeze(): boolean {
    return this.freezeFile !== undefined;
  }

  /** Whether the group is frozen, or about to be (the state this process asked for). */
  get frozen(): boolean {
    return this.wantFrozen;
  }

  /**
   * Freezes every process of the group: none of them runs until {@link thaw}, whatever it
   * had scheduled (timers, loops). The write goes through libuv's thread pool: under load
   * the kernel's write sometimes sleeps for milliseconds (the cgroup locks), which must not
   * stall the gateway's event loop.
   */
  freeze(): void {
    if (!this.freezeFile || this.wantFrozen) return;
    this.wantFrozen = true;
    this.apply();
  }

  /**
   * Lets the group's processes run again. A no-op (a field check) when not frozen, so it
   * costs nothing on a warm path; otherwise one asynchronous write. Frames sent to the
   * instance meanwhile wait in its socket and are read once it runs.
   */
  thaw(): void {
    if (!this.wantFrozen) return;
    this.wantFrozen = false;
    this.apply();
  }

  /** Resolves once the freezer holds the state last asked for (benchmarks, tests). */
  applied(): Promise<void> {
    if (!this.writing && this.isFrozen === this.wantFrozen) return Promise.resolve();
    return new Promise((res) => this.appliedWaiters.push(res));
  }

  private closeFreezer(): void {
    if (this.freezeFd === undefined || this.writing) return;
    close(this.freezeFd, () => {});
    this.freezeFd = undefined;
  }

  /** Writes the wanted state, one write at a time, so a freeze and a thaw never reorder. */
  private apply(): void {
    if (this.writing || !this.freezeFile) return;
    if (this.removed) {
      this.closeFreezer();
      for (const w of this.appliedWaiters.splice(0)) w();
      return;
    }
    if (this.isFrozen === this.wantFrozen) {
      for (const w of this.appliedWaiters.splice(0)) w();
      return;
    }
    const target = this.wantFrozen;
    if (this.freezeFd === undefined) {
      try {
        // Kept open: one write per change, no open/close through the thread pool.
        this.freezeFd = openSync(this.freezeFile, "r+");
      } catch {
        this.isFrozen = this.wantFrozen; // the group is gone
        return;
      }
    }
    this.writing = true;
    const value = this.version === "v2" ? (target ? "1" : "0") : target ? "FROZEN" : "THAWED";
    write(this.freezeFd, value, 0, (err) => {
      this.writing = false;
      // An error means the group is gone (the instance exited): nothing left to do.
      if (err) {
        this.isFrozen = this.wantFrozen;
      } else this.isFrozen = target;
      this.apply();
    });
  }

  /**
   * CPU time the group's processes used so far, in ms, measured by the kernel (the
   * instance cannot lower it), or undefined without CPU accounting.
   */
  cpuUsageMs(): number | undefined {
    if (!this.usageFile) return undefined;
    try {
      // Read twice per invocation: a kept-open fd and a positional read (no open/close).
      this.usageFd ??= openSync(this.usageFile, "r");
      const n = readSync(this.usageFd, USAGE_BUF, 0, USAGE_BUF.length, 0);
      const text = USAGE_BUF.toString("latin1", 0, n);
      if (this.version === "v1") return Number(text.trim()) / 1e6;
      const m = /usage_usec (\d+)/.exec(text);
      return m ? Number(m[1]) / 1000 : undefined;
    } catch {
      return undefined;
    }
  }

  /** Changes the CPU quota, in cores (used when a pre-started process is assigned a function). */
  setCpus(cpus: number): void {
    if (!this.cpuDir) return;
    const period = 100_000;
    const quota = String(Math.max(1000, Math.round(cpus * period)));
    try {
      if (this.version === "v2") writeFileSync(join(this.cpuDir, "cpu.max"), `${quota} ${period}`);
      else writeFileSync(join(this.cpuDir, "cpu.cfs_quota_us"), quota);
    } catch {
      // The group is gone.
    }
  }

  /**
   * Wraps a command so that it joins these cgroups before it execs: every process of the
   * sandbox starts inside them (moving a pid after the spawn would miss its children).
   */
  wrap(cmd: string, args: string[]): { cmd: string; args: string[] } {
    return {
      cmd: "/bin/sh",
      args: [
        "-c",
        'for f in $(echo "$1" | tr , " "); do echo $$ > "$f"; done; shift; exec "$@"',
        "sh",
        this.procsFiles.join(","),
        cmd,
        ...args,
      ],
    };
  }

  /** True when the kernel's OOM killer killed a process of this cgroup. */
  oomKilled(): boolean {
    if (!this.memoryDir) return false;
    try {
      const file = this.version === "v2" ? "memory.events" : "memory.oom_control";
      const m = /oom_kill (\d+)/.exec(readFileSync(join(this.memoryDir, file), "utf8"));
      return m !== null && Number(m[1]) > 0;
    } catch {
      return false;
    }
  }

  /** Changes the memory limit (used when a pre-started process is assigned a function). */
  setMemoryMB(mb: number): void {
    if (!this.memoryDir) return;
    const bytes = String(mb * 1024 * 1024);
    if (this.version === "v2") writeFileSync(join(this.memoryDir, "memory.max"), bytes);
    else {
      // memsw must stay >= limit: raise it first when growing, lower it last when shrinking.
      tryWrite(join(this.memoryDir, "memory.memsw.limit_in_bytes"), bytes);
      writeFileSync(join(this.memoryDir, "memory.limit_in_bytes"), bytes);
      tryWrite(join(this.memoryDir, "memory.memsw.limit_in_bytes"), bytes);
    }
  }

  /**
   * Removes the cgroup directories once the processes are gone. Right after an exit the
   * kernel may not have reaped the task yet (EBUSY): retried off the event loop, bounded.
   */
  remove(attempt = 0): void {
    this.removed = true;
    this.closeFreezer();
    if (this.usageFd !== undefined) {
      close(this.usageFd, () => {});
      this.usageFd = undefined;
    }
    const left: string[] = [];
    for (const dir of this.dirs) {
      try {
        rmdirSync(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") left.push(dir);
      }
    }
    this.dirs.splice(0, this.dirs.length, ...left);
    // Not unref'd: a platform exiting right after close() waits (at most ~1 s) for it.
    if (left.length > 0 && attempt < 40) setTimeout(() => this.remove(attempt + 1), 25);
  }
}

function tryWrite(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch {
    // Optional knob (e.g. memsw without swap accounting).
  }
}

/**
 * Removes empty instance cgroups left by a platform that died (it could not remove them):
 * only those older than a minute, so a cgroup being set up right now is never touched;
 * one with processes in it cannot be removed (EBUSY) and is kept.
 */
export function sweepStaleCgroups(p: Protections, now = Date.now()): number {
  if (!p.cgroups) return 0;
  const roots =
    p.cgroups === "v2"
      ? [join(V1_ROOT, GROUP)]
      : ["memory", "cpu", "pids", "cpuacct", "freezer"].map((c) => join(V1_ROOT, c, GROUP));
  let removed = 0;
  for (const root of roots) {
    let names: string[];
    try {
      names = readdirSync(root);
    } catch {
      continue;
    }
    for (const name of names) {
      const dir = join(root, name);
      // A platform that died with an instance frozen left it frozen: thawed, it receives
      // the kill its sandbox got when the platform died (--die-with-parent). Groups of a
      // platform still running (its pid is in the name) are left alone.
      if (!ownerAlive(name)) {
        if (root.endsWith(`freezer/${GROUP}`)) tryWrite(join(dir, "freezer.state"), "THAWED");
        else if (p.cgroups === "v2") tryWrite(join(dir, "cgroup.freeze"), "0");
      }
      try {
        if (!statSync(dir).isDirectory() || now - statSync(dir).mtimeMs < 60_000) continue;
        rmdirSync(dir);
        removed++;
      } catch {
        // In use, or not ours to remove.
      }
    }
  }
  return removed;
}

/** Whether the platform process named in a group's name (`p<pid>-n`, `iso-<tenant>-<pid>-n`) runs. */
function ownerAlive(name: string): boolean {
  const m = /^p(\d+)-\d+$/.exec(name) ?? /-(\d+)-\d+$/.exec(name);
  if (!m) return true;
  try {
    process.kill(Number(m[1]), 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** What the sandboxed process sees and where. */
export interface SandboxMounts {
  /** Host directory holding the node binary. */
  nodeDir: string;
  /** Host directory holding the runtime shim (src/runtime). */
  runtimeDir: string;
  /** Host directory holding the function's code (read-only in the sandbox). */
  codeDir: string;
  /** Host directory holding the instance's egress proxy sockets (seen at {@link INSIDE}.egress). */
  egressDir?: string;
  /** More read-only binds: host path → path inside. */
  extra?: [string, string][];
  /** Size of the private /tmp, in MB. */
  tmpMB: number;
}

/** Paths as seen inside the sandbox: all neutral, none names a host path. */
export const INSIDE = {
  node: "/nimbus/node/node",
  runtime: "/nimbus/runtime",
  code: "/fn",
  egress: "/nimbus/egress",
} as const;

/**
 * The bwrap options (everything before the command) that run a command in a fresh sandbox:
 * every namespace unshared — network included, so the instance's only way out is the
 * egress proxy socket — the sandbox uid 1000 (which maps to the unprivileged host uid bwrap
 * runs as), no nested user namespaces, a private /tmp and /proc.
 * They are passed with `--args FD`, so the sandbox's `/proc/1/cmdline` shows no host path.
 */
export function bwrapOptions(m: SandboxMounts): string[] {
  const args = [
    "--unshare-all",
    "--unshare-user",
    "--uid",
    "1000",
    "--gid",
    "1000",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
    "--hostname",
    "nimbus",
    "--ro-bind",
    "/usr/lib",
    "/usr/lib",
    "--symlink",
    "usr/lib",
    "/lib",
  ];
  if (existsSync("/usr/lib64"))
    args.push("--ro-bind", "/usr/lib64", "/usr/lib64", "--symlink", "usr/lib64", "/lib64");
  for (const f of ["/etc/ssl/certs", "/usr/share/zoneinfo", "/usr/share/ca-certificates"]) {
    if (existsSync(f)) args.push("--ro-bind", f, f);
  }
  args.push(
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--size",
    String(m.tmpMB * 1024 * 1024),
    "--tmpfs",
    "/tmp",
    "--ro-bind",
    m.nodeDir,
    dirname(INSIDE.node),
    "--ro-bind",
    m.runtimeDir,
    INSIDE.runtime,
    "--ro-bind",
    m.codeDir,
    INSIDE.code,
  );
  if (m.egressDir) args.push("--bind", m.egressDir, INSIDE.egress);
  for (const [src, dest] of m.extra ?? []) args.push("--ro-bind", src, dest);
  args.push("--chdir", "/tmp", "--setenv", "HOME", "/tmp");
  return args;
}

/** The bwrap argument list that runs `argv` in a fresh sandbox (options inline). */
export function bwrapArgs(m: SandboxMounts, argv: string[]): string[] {
  return [...bwrapOptions(m), "--", ...argv];
}
