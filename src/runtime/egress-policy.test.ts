import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkFunctionNetwork, serverCeiling } from "../executors/egress/ceiling.ts";
import { checkAll, Egress, isNonPublic, plainAddress } from "./egress-policy.ts";

describe("egress address classifier (pure, no connection)", () => {
  it("counts loopback, RFC 1918, link-local, CGNAT, IPv6 ULA/link-local and mapped forms as non-public", () => {
    for (const ip of [
      "127.0.0.1",
      "127.255.0.9",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "100.127.255.254",
      "0.0.0.0",
      "255.255.255.255",
      "224.0.0.1",
      "::",
      "::1",
      "[::1]",
      "fd00::1",
      "fc00::1",
      "fe80::1",
      "fe80::1%eth0",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "::ffff:a9fe:a9fe",
      "0:0:0:0:0:ffff:10.0.0.1",
      "::127.0.0.1",
      "64:ff9b::a9fe:a9fe",
      "2002:7f00:1::",
      "not-an-address",
    ]) {
      assert.equal(isNonPublic(ip), true, ip);
    }
    for (const ip of [
      "93.184.215.14",
      "1.1.1.1",
      "8.8.8.8",
      "100.128.0.1",
      "172.32.0.1",
      "2606:4700::1111",
    ]) {
      assert.equal(isNonPublic(ip), false, ip);
    }
    assert.deepEqual(plainAddress("::ffff:7f00:1"), { address: "127.0.0.1", type: "ipv4" });
  });

  it("the ceiling refuses the host's own addresses and admits only the operator's grants", () => {
    const c = serverCeiling(["127.0.0.2/32"], ["203.0.113.7", "2001:db8::7"]);
    assert.equal(c.check("x", "93.184.215.14"), undefined);
    assert.match(c.check("x", "203.0.113.7") ?? "", /host address/);
    assert.equal(c.check("x", "127.0.0.2"), undefined);
    assert.match(c.check("x", "127.0.0.3") ?? "", /loopback/);
    assert.match(c.check("x", "::ffff:127.0.0.1") ?? "", /loopback/);
    // An operator's name grant admits what that name resolves to.
    const named = serverCeiling(["db.internal"], []);
    assert.equal(named.check("db.internal", "10.1.2.3"), undefined);
    assert.match(named.check("other.internal", "10.1.2.3") ?? "", /private/);
  });

  it("a function's policy only narrows: every policy must allow", () => {
    const ceiling = serverCeiling([], []);
    const fn = new Egress({ default: "allow", allowPrivate: true });
    assert.match(checkAll([ceiling, fn], "x", "10.0.0.1") ?? "", /private/);
    const deny = new Egress({ default: "deny", allow: ["api.example.com"] });
    assert.equal(checkAll([ceiling, deny], "api.example.com", "93.184.215.14"), undefined);
    assert.match(checkAll([ceiling, deny], "other.example.com", "93.184.215.14") ?? "", /allow list/);
    // A name rule never admits a private answer (DNS rebinding).
    assert.match(checkAll([ceiling, deny], "api.example.com", "127.0.0.1") ?? "", /loopback/);
  });

  it("deploy-time check: widening needs an operator grant", () => {
    assert.throws(() => checkFunctionNetwork({ default: "allow", allowPrivate: true }, []), /allowPrivate/);
    assert.throws(
      () => checkFunctionNetwork({ default: "allow", allow: ["10.0.0.0/8"] }, []),
      /10\.0\.0\.0\/8/,
    );
    assert.throws(
      () => checkFunctionNetwork({ default: "allow", allow: ["10.0.0.0/8"] }, ["10.1.0.0/16"]),
      /not a public range/,
    );
    checkFunctionNetwork({ default: "allow", allow: ["10.1.2.0/24"] }, ["10.1.0.0/16"]);
    checkFunctionNetwork({ default: "allow", allowPrivate: true }, ["10.1.0.0/16"]);
    checkFunctionNetwork({ default: "deny", allow: ["api.example.com", "93.184.215.0/24"] }, []);
  });
});
