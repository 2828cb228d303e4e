/**
 * The egress policy shared by both executors: which addresses an instance may connect to.
 * Pure (no I/O): the platform's egress proxy evaluates it on every address a name resolves
 * to, at connect time, and the isolate host evaluates a function's own (narrower) policy.
 */
import { BlockList, isIP } from "node:net";

/** A network policy (the server's ceiling, a function's `network` config, or an operator grant list). */
export interface EgressPolicy {
  /**
   * What happens to a destination no rule names: `"allow"` lets public addresses through,
   * `"deny"` refuses everything not in `allow`.
   * @default "allow"
   */
  default: "allow" | "deny";
  /** Host names (`api.example.com`, `*.example.com`), IP addresses or CIDR ranges always allowed. */
  allow?: string[];
  /** Host names, IP addresses or CIDR ranges always refused, even inside an `allow` rule. */
  deny?: string[];
  /**
   * Whether non-public addresses (loopback, private, link-local, …) may be reached without
   * an `allow` rule. In a function's policy this never reaches past the server's ceiling.
   * @default false
   */
  allowPrivate?: boolean;
}

/** Address ranges that are not the public internet (IANA special-purpose registries). */
const NON_PUBLIC_V4: [string, number][] = [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8], // RFC 1918
  ["100.64.0.0", 10], // CGNAT (RFC 6598)
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local, incl. cloud metadata 169.254.169.254
  ["172.16.0.0", 12], // RFC 1918
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // TEST-NET-1
  ["192.88.99.0", 24], // 6to4 relay anycast
  ["192.168.0.0", 16], // RFC 1918
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // TEST-NET-2
  ["203.0.113.0", 24], // TEST-NET-3
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, incl. broadcast
];
const NON_PUBLIC_V6: [string, number][] = [
  ["::", 128], // unspecified
  ["::1", 128], // loopback
  // IPv4-mapped (::ffff:0:0/96) and -compatible (::/96) forms are unwrapped by plainAddress
  // and checked as IPv4 (a BlockList would match every IPv4 address against them).
  ["64:ff9b::", 96], // NAT64 — embeds an IPv4 address
  ["64:ff9b:1::", 48], // local-use NAT64
  ["100::", 64], // discard-only
  ["2001::", 32], // Teredo — embeds an IPv4 address
  ["2001:db8::", 32], // documentation
  ["2002::", 16], // 6to4 — embeds an IPv4 address
  ["fc00::", 7], // unique local (ULA)
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
];

const NON_PUBLIC = new BlockList();
for (const [net, bits] of NON_PUBLIC_V4) NON_PUBLIC.addSubnet(net, bits, "ipv4");
for (const [net, bits] of NON_PUBLIC_V6) NON_PUBLIC.addSubnet(net, bits, "ipv6");

/**
 * An address in its plain form: brackets dropped, IPv4-mapped/compatible IPv6 (`::ffff:127.0.0.1`,
 * `::ffff:7f00:1`) unwrapped to IPv4; undefined when `ip` is not an address.
 */
export function plainAddress(ip: string): { address: string; type: "ipv4" | "ipv6" } | undefined {
  const a = ip.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  const v = isIP(a);
  if (v === 4) return { address: a, type: "ipv4" };
  if (v !== 6) return undefined;
  const g = expandV6(a);
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, not :: or ::1) reach IPv4 a.b.c.d.
  const zeros5 = g.slice(0, 5).every((x) => x === 0);
  if (zeros5 && (g[5] === 0xffff || (g[5] === 0 && (g[6]! > 0 || g[7]! > 1)))) {
    const hi = g[6]!;
    const lo = g[7]!;
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, type: "ipv4" };
  }
  return { address: a, type: "ipv6" };
}

/** The eight 16-bit groups of a valid IPv6 address (an embedded IPv4 tail counts as two). */
function expandV6(a: string): number[] {
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const [b0, b1, b2, b3] = v4[1]!.split(".").map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill("0");
  return [...h, ...fill, ...t].map((x) => Number.parseInt(x, 16));
}

/**
 * Whether `ip` is not a public internet address (loopback, RFC 1918, CGNAT, link-local incl.
 * 169.254.169.254, IPv6 ULA/link-local, mapped and embedding forms, multicast, reserved).
 * Anything that is not an address at all counts as non-public.
 * @example isNonPublic("169.254.169.254") // true
 */
export function isNonPublic(ip: string): boolean {
  const p = plainAddress(ip);
  if (!p) return true;
  return NON_PUBLIC.check(p.address, p.type);
}

/** Whether `rule` (an address or CIDR range) is an address rule, and which. */
function parseNet(rule: string): { address: string; bits?: number; type: "ipv4" | "ipv6" } | undefined {
  const [addr, bits] = rule.split("/");
  const v = isIP(addr ?? "");
  if (!v) return undefined;
  const type = v === 4 ? "ipv4" : "ipv6";
  if (bits === undefined) return { address: addr!, type };
  const n = Number(bits);
  if (!Number.isInteger(n) || n < 0 || n > (v === 4 ? 32 : 128)) return undefined;
  return { address: addr!, bits: n, type };
}

/**
 * Whether a rule names an address or CIDR range (not a host name). Throws nothing.
 * @example isAddressRule("10.0.0.0/8") // true
 */
export function isAddressRule(rule: string): boolean {
  return parseNet(rule) !== undefined;
}

/** Options of a compiled policy. */
export interface EgressOptions {
  /** More addresses counted as non-public (the host's own addresses, for the server's ceiling). */
  hostAddresses?: string[];
  /**
   * Whether a host name in `allow` admits the non-public addresses it resolves to (the
   * operator's grants: `--egress-allow db.internal`). Off for functions' own policies, so a
   * public name whose DNS answer points inside (rebinding) stays refused. @default false
   */
  trustNames?: boolean;
}

/** A compiled policy. */
export class Egress {
  readonly policy: EgressPolicy;
  private readonly allowNets = new BlockList();
  private readonly denyNets = new BlockList();
  private readonly hostNets = new BlockList();
  private readonly allowNames: string[] = [];
  private readonly denyNames: string[] = [];
  private readonly trustNames: boolean;

  constructor(policy: EgressPolicy, options: EgressOptions = {}) {
    this.policy = policy;
    this.trustNames = options.trustNames ?? false;
    for (const [rules, nets, names] of [
      [policy.allow ?? [], this.allowNets, this.allowNames],
      [policy.deny ?? [], this.denyNets, this.denyNames],
    ] as const) {
      for (const r of rules) {
        const n = parseNet(r);
        if (n?.bits !== undefined) nets.addSubnet(n.address, n.bits, n.type);
        else if (n) nets.addAddress(n.address, n.type);
        else names.push(r.toLowerCase().replace(/\.$/, ""));
      }
    }
    for (const a of options.hostAddresses ?? []) {
      const p = plainAddress(a);
      if (p) this.hostNets.addAddress(p.address, p.type);
    }
  }

  private static nameMatches(names: string[], host: string): boolean {
    return names.some((n) => (n.startsWith("*.") ? host.endsWith(n.slice(1)) : host === n));
  }

  /** Whether `ip` (reached as `host`) may be connected to; the reason when not. */
  check(host: string, ip: string): string | undefined {
    const h = host
      .toLowerCase()
      .replace(/^\[|\]$/g, "")
      .replace(/\.$/, "");
    const p = plainAddress(ip);
    if (!p) return `${host} (${ip}) is not an IP address`;
    const { address, type } = p;
    // A deny rule wins over an allow rule (an exception carved out of an allowed range).
    if (Egress.nameMatches(this.denyNames, h) || this.denyNets.check(address, type)) {
      return `${host} (${address}) is denied by the network policy`;
    }
    if (this.allowNets.check(address, type)) return undefined;
    const named = Egress.nameMatches(this.allowNames, h);
    if (!named && this.policy.default === "deny")
      return `${host} is not in the network policy's allow list (default: deny)`;
    if (named && this.trustNames) return undefined;
    // A host name rule never admits a non-public address on its own: a public name whose
    // DNS answer points inside (DNS rebinding) is refused unless the address itself is allowed.
    if (
      !this.policy.allowPrivate &&
      (NON_PUBLIC.check(address, type) || this.hostNets.check(address, type))
    ) {
      return `${host} (${address}) is a private, loopback, link-local or host address, which the network policy refuses`;
    }
    return undefined;
  }
}

/**
 * The first reason any of `policies` refuses `ip` (reached as `host`), or undefined when all
 * allow it: a function's policy narrows the server's, never widens it.
 */
export function checkAll(policies: readonly Egress[], host: string, ip: string): string | undefined {
  for (const p of policies) {
    const why = p.check(host, ip);
    if (why) return why;
  }
  return undefined;
}
