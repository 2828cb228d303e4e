/**
 * `nimbus top`: a live terminal view of the busiest functions (req/s, p99, instances,
 * errors), redrawn every `--interval` seconds; `--once --json` prints one snapshot.
 */
import type { Command } from "commander";
import type { TopRow } from "../api/top.ts";
import { Client } from "./client.ts";

interface Helpers {
  out: (json: boolean, data: unknown, human: () => string) => void;
  table: (rows: (string | number)[][]) => string;
  action: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;
}

/** The table `top` draws. */
export function topTable(r: { windowMs: number; functions: TopRow[] }, table: Helpers["table"]): string {
  const ms = (n: number | null) => (n === null ? "-" : `${n}`);
  return [
    `nimbus top — busiest functions over the last ${Math.round(r.windowMs / 1000)} s (${new Date().toLocaleTimeString()})`,
    "",
    table([
      ["FUNCTION", "REQ/S", "P50 MS", "P99 MS", "ERRORS", "ERR %", "COLD", "INSTANCES", "BUSY", "QUEUED"],
      ...r.functions.map((f) => [
        f.name,
        f.rps.toFixed(2),
        ms(f.p50),
        ms(f.p99),
        f.errors,
        (f.errorRate * 100).toFixed(1),
        f.cold,
        f.instances,
        f.busy,
        f.queued,
      ]),
    ]),
  ].join("\n");
}

/** Registers `nimbus top`. */
export function registerTopCommand(program: Command, h: Helpers): void {
  program
    .command("top")
    .description("Live view of the busiest functions: req/s, p50/p99, errors, instances (q or Ctrl-C quits)")
    .option("--minutes <n>", "window the rates are taken over, minutes (1-60)", "5")
    .option("-n, --limit <n>", "functions shown", "20")
    .option("--interval <s>", "seconds between refreshes", "2")
    .option("--once", "print one snapshot and exit")
    .option("--json", "print JSON (with --once)")
    .action(
      h.action(
        async (o: { minutes: string; limit: string; interval: string; once?: boolean; json?: boolean }) => {
          const client = new Client();
          const q = new URLSearchParams({ minutes: o.minutes, limit: o.limit });
          const get = () => client.json<{ windowMs: number; functions: TopRow[] }>("GET", `/api/v1/top?${q}`);
          if (o.once || !process.stdout.isTTY) {
            const r = await get();
            h.out(Boolean(o.json), r, () => topTable(r, h.table));
            return;
          }
          const every = Math.max(0.5, Number(o.interval) || 2) * 1000;
          const stdin = process.stdin;
          if (stdin.isTTY) {
            stdin.setRawMode(true);
            stdin.on("data", (d) => {
              if (d[0] === 0x71 || d[0] === 0x03) {
                process.stdout.write("\x1b[?25h\n");
                process.exit(0);
              }
            });
          }
          process.stdout.write("\x1b[?25l");
          for (;;) {
            const r = await get();
            // Home, draw, clear what is left of the last frame.
            process.stdout.write(`\x1b[H${topTable(r, h.table)}\x1b[J\n`);
            await new Promise((res) => setTimeout(res, every));
          }
        },
      ),
    );
}
