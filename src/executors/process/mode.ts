/**
 * Fail closed: what the platform may do given the protections the host has. Without a
 * working sandbox (bubblewrap + memory/CPU/pids cgroups) functions run only in a local
 * development mode — loopback-only, the default tenant, said at start, in `nimbus info` and on
 * every deploy — unless the operator names the risk (`--insecure-no-sandbox`, NIMBUS_SANDBOX=off).
 */
import { isIP } from "node:net";
import { NimbusError } from "../../errors.ts";
import type { Protections } from "./sandbox.ts";

/**
 * - `sandboxed`: every protection is on.
 * - `development`: no sandbox; loopback only (a laptop).
 * - `insecure`: no sandbox, and the operator said so; any address.
 */
export type SandboxMode = "sandboxed" | "development" | "insecure";

/** How to get the sandbox. */
export const INSTALL_HINT =
  "install the sandbox: apt-get install bubblewrap (cgroups v1 or v2 with the memory, cpu and pids controllers writable by the server), then restart 'nimbus serve'";

/** The mode for these protections; `insecure` is the operator's explicit opt-out. */
export function sandboxMode(p: Protections, insecure: boolean): SandboxMode {
  if (p.sandboxed) return "sandboxed";
  return insecure ? "insecure" : "development";
}

/** Whether `host` (a bind address) is loopback-only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^::ffff:127\./.test(h);
  return false;
}

/** Refuses to listen beyond loopback without the sandbox, unless the operator opted out. */
export function checkListen(mode: SandboxMode, host: string): void {
  if (mode === "development" && !isLoopbackHost(host)) {
    throw new NimbusError(
      "NIMBUS_SANDBOX_REQUIRED",
      `Refusing to listen on ${host}: functions are not sandboxed on this machine, so Nimbus runs only for local development on a loopback address (e.g. --host 127.0.0.1). To share it, ${INSTALL_HINT}. To run unsandboxed anyway (any function can then read what the instance user can read, and reach the host's network), pass --insecure-no-sandbox.`,
    );
  }
}

/** The warning shown at start, in `nimbus info` and on every deploy; undefined when sandboxed. */
export function sandboxWarning(mode: SandboxMode): string | undefined {
  if (mode === "sandboxed") return undefined;
  const what =
    "functions are NOT sandboxed: they share the host's filesystem view and network (no egress policy below the language), limited only by running as an unprivileged user";
  return mode === "development"
    ? `LOCAL DEVELOPMENT MODE — ${what}. Loopback only, default tenant only. To ${INSTALL_HINT}.`
    : `INSECURE (--insecure-no-sandbox) — ${what}, and the server listens beyond loopback. To ${INSTALL_HINT}.`;
}

/**
 * Refuses to run functions as root: a server running as root must be able to drop
 * instances to an unprivileged uid (setpriv), sandbox or not, unless the operator opted out.
 */
export function checkPrivileges(p: Protections, insecure: boolean, isRoot = process.getuid?.() === 0): void {
  if (isRoot && !p.runAs && !insecure) {
    throw new NimbusError(
      "NIMBUS_SANDBOX_REQUIRED",
      "Refusing to start: the server runs as root and cannot drop instances to an unprivileged uid (setpriv not found), so functions would run as root. Install util-linux (setpriv), run the server as an unprivileged user, or pass --insecure-no-sandbox.",
    );
  }
}
