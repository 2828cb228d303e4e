/**
 * A seccomp filter for sandboxed instances, compiled here to classic BPF (the format bwrap's
 * `--seccomp FD` loads): system calls a function never needs fail with EPERM — tracing other
 * processes, mounting, new namespaces, BPF, kernel keyrings, perf events, io_uring (libuv
 * falls back to its thread pool), kernel modules, kexec, and friends. Other architectures'
 * system calls (i386 via int 0x80, x32) are refused outright.
 *
 * The program (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, little-endian):
 *
 *   ld  [4]                 ; seccomp_data.arch
 *   jeq ARCH, +1, +0
 *   ret KILL_PROCESS        ; a foreign ABI
 *   ld  [0]                 ; seccomp_data.nr
 *   jge 0x40000000 → errno  ; x32 (x86-64 only)
 *   jeq nr_1 → errno … jeq nr_n → errno
 *   ret ALLOW
 *   ret ERRNO | EPERM
 */

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_RET_K = 0x06;
const RET_KILL_PROCESS = 0x80000000;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO_EPERM = 0x00050000 | 1;
const X32_SYSCALL_BIT = 0x40000000;

/** Denied system calls by name → number, per architecture. */
const DENIED: Record<string, { arch: number; nr: Record<string, number> }> = {
  x64: {
    arch: 0xc000003e, // AUDIT_ARCH_X86_64
    nr: {
      ptrace: 101,
      syslog: 103,
      vhangup: 153,
      pivot_root: 155,
      chroot: 161,
      acct: 163,
      mount: 165,
      umount2: 166,
      swapon: 167,
      swapoff: 168,
      reboot: 169,
      init_module: 175,
      delete_module: 176,
      quotactl: 179,
      lookup_dcookie: 212,
      kexec_load: 246,
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      unshare: 272,
      perf_event_open: 298,
      name_to_handle_at: 303,
      open_by_handle_at: 304,
      setns: 308,
      process_vm_readv: 310,
      process_vm_writev: 311,
      finit_module: 313,
      kexec_file_load: 320,
      bpf: 321,
      userfaultfd: 323,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      open_tree: 428,
      move_mount: 429,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      mount_setattr: 442,
    },
  },
  arm64: {
    arch: 0xc00000b7, // AUDIT_ARCH_AARCH64
    nr: {
      umount2: 39,
      mount: 40,
      pivot_root: 41,
      chroot: 51,
      acct: 89,
      unshare: 97,
      kexec_load: 104,
      init_module: 105,
      delete_module: 106,
      syslog: 116,
      ptrace: 117,
      reboot: 142,
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      swapon: 224,
      swapoff: 225,
      perf_event_open: 241,
      name_to_handle_at: 264,
      open_by_handle_at: 265,
      setns: 268,
      process_vm_readv: 270,
      process_vm_writev: 271,
      finit_module: 273,
      bpf: 280,
      userfaultfd: 282,
      kexec_file_load: 294,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      open_tree: 428,
      move_mount: 429,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      mount_setattr: 442,
    },
  },
};

/** The names of the denied system calls. */
export const DENIED_SYSCALLS: readonly string[] = Object.keys(DENIED.x64!.nr);

/**
 * The compiled filter for `arch` (Node's `process.arch`), or undefined where Nimbus has no
 * table for it (the sandbox then runs without one, and says so).
 */
export function seccompProgram(arch: string = process.arch): Buffer | undefined {
  const table = DENIED[arch];
  if (!table) return undefined;
  const ins: [number, number, number, number][] = [];
  ins.push([BPF_LD_W_ABS, 0, 0, 4]);
  ins.push([BPF_JEQ_K, 1, 0, table.arch]);
  ins.push([BPF_RET_K, 0, 0, RET_KILL_PROCESS]);
  ins.push([BPF_LD_W_ABS, 0, 0, 0]);
  const jumps: number[] = [];
  if (arch === "x64") {
    jumps.push(ins.length);
    ins.push([BPF_JGE_K, 0, 0, X32_SYSCALL_BIT]);
  }
  for (const nr of Object.values(table.nr)) {
    jumps.push(ins.length);
    ins.push([BPF_JEQ_K, 0, 0, nr]);
  }
  ins.push([BPF_RET_K, 0, 0, RET_ALLOW]);
  const errno = ins.length;
  ins.push([BPF_RET_K, 0, 0, RET_ERRNO_EPERM]);
  for (const j of jumps) ins[j]![1] = errno - j - 1;
  const buf = Buffer.alloc(ins.length * 8);
  ins.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return buf;
}
