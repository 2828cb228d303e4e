/**
 * The server's egress ceiling: public addresses yes; non-public ones (loopback, private,
 * link-local, CGNAT, the host's own addresses…) only where the operator granted them
 * (`nimbus serve --egress-allow <cidr|name>`). A function's `network` config can only narrow it.
 */
import { networkInterfaces } from "node:os";
import { NimbusError } from "../../errors.ts";
import { Egress, type EgressPolicy, isAddressRule, isNonPublic } from "../../runtime/egress-policy.ts";

/** This machine's own interface addresses (denied like private ones unless granted). */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.push(a.address);
  }
  return out;
}

/** The compiled ceiling for a list of operator grants. */
export function serverCeiling(grants: readonly string[] = [], ownAddresses = hostAddresses()): Egress {
  return new Egress(
    { default: "allow", allowPrivate: false, allow: [...grants] },
    { hostAddresses: ownAddresses, trustNames: true },
  );
}

/** Validates operator grants (`--egress-allow`): addresses, CIDR ranges or host names. */
export function checkGrants(grants: readonly string[]): void {
  for (const g of grants) {
    if (g.length === 0 || g.length > 253 || /\s/.test(g) || (g.includes("/") && !isAddressRule(g))) {
      throw new NimbusError(
        "NIMBUS_BAD_REQUEST",
        `--egress-allow ${JSON.stringify(g)} is not an address, CIDR range (e.g. 10.1.2.0/24) or host name.`,
      );
    }
  }
}

/** Whether the address rule `rule` lies inside one of the address grants. */
function covered(rule: string, grants: readonly string[]): boolean {
  const [addr, bitsRaw] = rule.split("/");
  const grantNets = grants.filter(isAddressRule);
  if (grantNets.length === 0) return false;
  const e = new Egress({ default: "deny", allow: grantNets });
  // A range is covered when its first and last addresses are (grants are ranges too).
  if (bitsRaw === undefined) return e.check("", addr!) === undefined;
  const bits = Number(bitsRaw);
  const v4 = !addr!.includes(":");
  if (v4) {
    const n = addr!.split(".").reduce((acc, x) => acc * 256 + Number(x), 0);
    const size = 2 ** (32 - bits);
    const first = n - (n % size);
    const last = first + size - 1;
    const ip = (x: number) => [24, 16, 8, 0].map((s) => Math.floor(x / 2 ** s) % 256).join(".");
    return e.check("", ip(first)) === undefined && e.check("", ip(last)) === undefined;
  }
  // IPv6 ranges: only exact grants (rare in practice; say so rather than guess).
  return grantNets.includes(rule);
}

/**
 * Refuses, at deploy, a function network policy that would reach past the ceiling: a
 * non-public `allow` range or `allowPrivate: true` without a matching operator grant.
 */
export function checkFunctionNetwork(policy: EgressPolicy | undefined, grants: readonly string[]): void {
  if (!policy) return;
  const how =
    "A function's network policy can only narrow the server's; an operator can grant a private range with 'nimbus serve --egress-allow <range>'.";
  if (policy.allowPrivate && grants.length === 0) {
    throw new NimbusError(
      "NIMBUS_BAD_CONFIG",
      `config.network.allowPrivate: the server grants no private, loopback or link-local address. ${how}`,
    );
  }
  for (const rule of policy.allow ?? []) {
    if (!isAddressRule(rule)) continue;
    const [addr, bits] = rule.split("/");
    const nonPublic = isNonPublic(addr!) || (bits !== undefined && Number(bits) < 8);
    if (nonPublic && !covered(rule, grants)) {
      throw new NimbusError(
        "NIMBUS_BAD_CONFIG",
        `config.network.allow: ${rule} is not a public range and the server does not grant it. ${how}`,
      );
    }
  }
}
