/**
 * Micro-benchmark of the cgroup freezer on the invocation path: what a thaw (before a
 * request is sent to a frozen instance) and a freeze (after its response) cost the
 * gateway's event loop. Needs root and a cgroup freezer (v1 `freezer` or v2 `cgroup.freeze`).
 *
 *   npx node --no-node-snapshot bench/freeze.ts [rounds]
 */
import { spawn } from "node:child_process";
import { Cgroup, detectProtections } from "../src/executors/process/sandbox.ts";

const rounds = Number(process.argv[2] ?? 2000);
const p = detectProtections();
if (!p.freezer) {
  process.stdout.write(`no cgroup freezer on this host: ${p.off.join("; ")}\n`);
  process.exit(0);
}
const cg = new Cgroup(p, `bench-freeze-${process.pid}`, { memoryMB: 64, cpus: 1, pids: 8 });
const { cmd, args } = cg.wrap("/bin/sleep", ["600"]);
const child = spawn(cmd, args, { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 200));

const freezeCall: number[] = [];
const freezeDone: number[] = [];
const thawCall: number[] = [];
const thawDone: number[] = [];
const us = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1000;
for (let i = 0; i < rounds; i++) {
  let t = process.hrtime.bigint();
  cg.freeze();
  freezeCall.push(us(t));
  await cg.applied();
  freezeDone.push(us(t));
  t = process.hrtime.bigint();
  cg.thaw();
  thawCall.push(us(t));
  await cg.applied();
  thawDone.push(us(t));
}
// A thaw of an instance that is not frozen (the warm hot path) is a field check.
const noopUs: number[] = [];
for (let i = 0; i < rounds; i++) {
  const t = process.hrtime.bigint();
  cg.thaw();
  noopUs.push(us(t));
}
// Reading the kernel's CPU figure (twice per invocation).
const usageUs: number[] = [];
for (let i = 0; i < rounds; i++) {
  const t = process.hrtime.bigint();
  cg.cpuUsageMs();
  usageUs.push(us(t));
}
// For comparison: the same write done synchronously (what the event loop would wait for).
const syncUs: number[] = [];
const file = cg.dirs.find((d) => d.includes("/freezer/"));
if (file) {
  const { writeFileSync } = await import("node:fs");
  for (let i = 0; i < rounds; i++) {
    const t = process.hrtime.bigint();
    writeFileSync(`${file}/freezer.state`, i % 2 === 0 ? "FROZEN" : "THAWED");
    syncUs.push(us(t));
  }
  writeFileSync(`${file}/freezer.state`, "THAWED");
}
child.kill("SIGKILL");
await new Promise((r) => child.once("exit", r));
cg.remove();

const q = (xs: number[], f: number): string => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(f * s.length))]!.toFixed(1);
};
const row = (name: string, xs: number[]): string =>
  `| ${name} | ${q(xs, 0.5)} | ${q(xs, 0.9)} | ${q(xs, 0.99)} |`;
process.stdout.write(
  [
    `cgroup ${p.cgroups} freezer, ${rounds} rounds (µs)`,
    "| operation | p50 | p90 | p99 |",
    "| --- | --- | --- | --- |",
    row("freeze(): event-loop time", freezeCall),
    row("freeze applied (thread pool write)", freezeDone),
    row("thaw(): event-loop time", thawCall),
    row("thaw applied (thread pool write)", thawDone),
    row("thaw() when not frozen", noopUs),
    row("cpuUsageMs() (cpuacct.usage read)", usageUs),
    ...(syncUs.length ? [row("one synchronous freezer.state write", syncUs)] : []),
    "",
  ].join("\n"),
);
