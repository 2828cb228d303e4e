/**
 * The egress policy for `fetch` from isolates, enforced in the isolate host at connect time
 * (every DNS answer is checked, so a name that resolves to a private address is refused
 * too, and a redirect cannot escape the policy).
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP } from "node:net";
import type { EgressPolicy } from "./frames.ts";

const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  NON_PUBLIC.addSubnet(net, bits, "ipv4");
}
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const) {
  NON_PUBLIC.addSubnet(net, bits, "ipv6");
}

/** A compiled policy. */
export class Egress {
  private readonly policy: EgressPolicy;
  private readonly allowNets = new BlockList();
  private readonly denyNets = new BlockList();
  private readonly allowNames: string[] = [];
  private readonly denyNames: string[] = [];

  constructor(policy: EgressPolicy) {
    this.policy = policy;
    for (const [rules, nets, names] of [
      [policy.allow ?? [], this.allowNets, this.allowNames],
      [policy.deny ?? [], this.denyNets, this.denyNames],
    ] as const) {
      for (const r of rules) {
        const [addr, bits] = r.split("/");
        const v = isIP(addr ?? "");
        if (v) {
          const type = v === 4 ? "ipv4" : "ipv6";
          if (bits !== undefined) nets.addSubnet(addr!, Number(bits), type);
          else nets.addAddress(addr!, type);
        } else names.push(r.toLowerCase());
      }
    }
  }

  private static nameMatches(names: string[], host: string): boolean {
    return names.some((n) => (n.startsWith("*.") ? host.endsWith(n.slice(1)) : host === n));
  }

  /** Whether `ip` (reached as `host`) may be connected to; the reason when not. */
  check(host: string, ip: string): string | undefined {
    const h = host.toLowerCase().replace(/^\[|\]$/g, "");
    const plain = ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
    const type = isIP(plain) === 6 ? "ipv6" : "ipv4";
    // A deny rule wins over an allow rule (an exception carved out of an allowed range).
    if (Egress.nameMatches(this.denyNames, h) || this.denyNets.check(plain, type)) {
      return `${host} (${plain}) is denied by the network policy`;
    }
    if (Egress.nameMatches(this.allowNames, h) || this.allowNets.check(plain, type)) return undefined;
    if (this.policy.default === "deny")
      return `${host} is not in the network policy's allow list (default: deny)`;
    if (!this.policy.allowPrivate && NON_PUBLIC.check(plain, type)) {
      return `${host} (${plain}) is a private, loopback or link-local address, which the network policy refuses`;
    }
    return undefined;
  }

  /** A `lookup` for net/tls connect that only returns permitted addresses. */
  readonly lookup = (
    hostname: string,
    options: { all?: boolean; family?: number },
    cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (err, addresses) => {
      if (err) return cb(err, []);
      const ok: LookupAddress[] = [];
      let reason = "";
      for (const a of addresses) {
        const why = this.check(hostname, a.address);
        if (why) reason = why;
        else ok.push(a);
      }
      if (ok.length === 0) {
        const e = new Error(
          `fetch to ${hostname} refused: ${reason || "no address"}`,
        ) as NodeJS.ErrnoException;
        e.code = "ENIMBUSEGRESS";
        return cb(e, []);
      }
      if (options.all) cb(null, ok);
      else cb(null, ok[0]!.address, ok[0]!.family);
    });
  };
}
