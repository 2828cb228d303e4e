/**
 * CLI command for triggers: `nimbus triggers ls [--function <name>] [--json]`.
 */
import type { Command } from "commander";
import { Client } from "./client.ts";
import type { CliKit } from "./events.ts";

/** Adds the commands to `program`. */
export function registerTriggerCommands(program: Command, kit: CliKit): void {
  const { out, table, action } = kit;
  const triggers = program.command("triggers").description("MQTT and NATS triggers: ls");
  triggers
    .command("ls")
    .description("Every trigger with its state (connected, retrying with the last error) and counters")
    .option("-f, --function <name>", "only this function's")
    .option("--json", "print JSON")
    .action(
      action(async (o: { function?: string; json?: boolean }) => {
        const q = o.function ? `?function=${encodeURIComponent(o.function)}` : "";
        const r = await new Client().json<{ triggers: any[] }>("GET", `/api/v1/triggers${q}`);
        out(Boolean(o.json), r, () =>
          r.triggers.length === 0
            ? 'No triggers. Add `triggers: [{ type: "mqtt", url, topic }]` to a function\'s config.'
            : table([
                [
                  "FUNCTION",
                  "#",
                  "TYPE",
                  "TARGET",
                  "STATE",
                  "RECEIVED",
                  "STORED",
                  "ACKED",
                  "DROPPED",
                  "LAST ERROR",
                ],
                ...r.triggers.map((t) => [
                  t.function,
                  t.index,
                  t.type,
                  t.target,
                  t.state === "retrying" ? `retrying (${t.retries})` : t.state,
                  t.received,
                  t.stored,
                  t.acked,
                  t.dropped,
                  (t.lastError ?? "-").slice(0, 80),
                ]),
              ]),
        );
      }),
    );
}
