/**
 * CLI commands for named queues: `nimbus queue create|ls|info|rm|purge|send` and
 * `nimbus queue dlq ls|redrive|purge <name>`.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { Client, fromBody } from "./client.ts";
import type { CliKit } from "./events.ts";

const enc = encodeURIComponent;

/** Adds the commands to `program`. */
export function registerQueueCommands(program: Command, kit: CliKit): void {
  const { out, table, action } = kit;
  const queue = program
    .command("queue")
    .description("Named queues: create, ls, info, rm, purge, send; dlq ls|redrive|purge");
  const row = (q: any) => [
    q.name,
    q.stats.ready,
    q.stats.delayed,
    q.stats.leased,
    q.stats.dead,
    q.maxRetries,
    q.dlq ?? "-",
    (q.consumers ?? []).map((c: any) => c.function).join(",") || "-",
  ];
  const header = ["NAME", "READY", "DELAYED", "IN FLIGHT", "DEAD", "RETRIES", "DLQ", "CONSUMERS"];

  queue
    .command("create")
    .description("Create a named queue")
    .argument("<name>", "queue name (^[a-z][a-z0-9-]{0,62}$)")
    .option("--max-retries <n>", "retries after a failed delivery before a message is dead (default 3)")
    .option("--dlq <queue>", "forward dead messages to this queue too")
    .option("--retention <time>", "how long a message may wait, e.g. 4d, 12h (default 4d, at most 14d)")
    .option("--max-backlog <n>", "undelivered messages at most; sends past it get 429 (default 10000)")
    .option("--json", "print JSON")
    .action(
      action(
        async (
          name: string,
          o: { maxRetries?: string; dlq?: string; retention?: string; maxBacklog?: string; json?: boolean },
        ) => {
          const body: Record<string, unknown> = { name };
          if (o.maxRetries !== undefined) body.maxRetries = Number(o.maxRetries);
          if (o.dlq !== undefined) body.dlq = o.dlq;
          if (o.retention !== undefined) body.retention = o.retention;
          if (o.maxBacklog !== undefined) body.maxBacklog = Number(o.maxBacklog);
          const r = await new Client().json("POST", "/api/v1/queues", body);
          out(
            Boolean(o.json),
            r,
            () => `Queue '${r.name}' created (retries ${r.maxRetries}, DLQ ${r.dlq ?? "none"}).`,
          );
        },
      ),
    );

  queue
    .command("ls")
    .description("Every queue with its message counts and consumers")
    .option("--json", "print JSON")
    .action(
      action(async (o: { json?: boolean }) => {
        const r = await new Client().json<{ queues: any[] }>("GET", "/api/v1/queues");
        out(Boolean(o.json), r, () =>
          r.queues.length === 0
            ? "No queues. Create one with 'nimbus queue create <name>'."
            : table([header, ...r.queues.map(row)]),
        );
      }),
    );

  queue
    .command("info")
    .description("A queue's settings, message counts and consumers")
    .argument("<name>", "queue name")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { json?: boolean }) => {
        const q = await new Client().json("GET", `/api/v1/queues/${enc(name)}`);
        out(Boolean(o.json), q, () =>
          [
            table([header, row(q)]),
            `retention ${q.retentionSeconds} s, max backlog ${q.maxBacklog}, created ${q.createdAt}`,
            ...(q.consumers as any[]).map(
              (c) =>
                `consumer ${c.function}: batch ${c.batchSize}, maxWait ${c.maxWaitMs} ms, retries ${c.maxRetries ?? q.maxRetries}, concurrency ${c.concurrency}, DLQ ${c.deadLetterQueue ?? q.dlq ?? "none"}, ${c.inflight} batch(es) in flight`,
            ),
          ].join("\n"),
        );
      }),
    );

  queue
    .command("rm")
    .description("Delete a queue with its waiting and dead messages")
    .argument("<name>", "queue name")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { json?: boolean }) => {
        await new Client().json("DELETE", `/api/v1/queues/${enc(name)}`);
        out(Boolean(o.json), { deleted: name }, () => `Queue '${name}' deleted.`);
      }),
    );

  queue
    .command("purge")
    .description("Delete a queue's waiting messages")
    .argument("<name>", "queue name")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { json?: boolean }) => {
        const r = await new Client().json("POST", `/api/v1/queues/${enc(name)}/purge`);
        out(Boolean(o.json), r, () => `${r.purged} message(s) deleted.`);
      }),
    );

  queue
    .command("send")
    .description("Send one message (for testing): printed id once it is stored durably")
    .argument("<name>", "queue name")
    .option("-d, --data <data>", "message body, or @file (JSON bodies reach Workers consumers parsed)", "")
    .option(
      "--content-type <type>",
      "json, text or bytes (default: json when the data parses as JSON, else text)",
    )
    .option("--delay <seconds>", "deliver no sooner than this")
    .option("--json", "print JSON")
    .action(
      action(
        async (name: string, o: { data: string; contentType?: string; delay?: string; json?: boolean }) => {
          const data = o.data.startsWith("@") ? readFileSync(o.data.slice(1)) : Buffer.from(o.data);
          let ct = o.contentType;
          if (!ct) {
            try {
              JSON.parse(data.toString("utf8"));
              ct = "json";
            } catch {
              ct = "text";
            }
          }
          const mime =
            ct === "json" ? "application/json" : ct === "text" ? "text/plain" : "application/octet-stream";
          const q = o.delay ? `?delaySeconds=${enc(o.delay)}` : "";
          const res = await new Client().raw("POST", `/api/v1/queues/${enc(name)}/messages${q}`, {
            body: new Uint8Array(data),
            headers: { "content-type": mime },
          });
          const parsed = JSON.parse((await res.text()) || "{}");
          if (res.status !== 202) throw fromBody(res.status, parsed);
          out(Boolean(o.json), parsed, () => `Sent ${parsed.messageIds[0]}.`);
        },
      ),
    );

  const dlq = queue.command("dlq").description("A queue's dead messages: ls, redrive, purge");
  dlq
    .command("ls")
    .description("Dead messages (out of retries, or past retention), newest first")
    .argument("<name>", "queue name")
    .option("--limit <n>", "at most this many", "100")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { limit: string; json?: boolean }) => {
        const r = await new Client().json<{ messages: any[] }>(
          "GET",
          `/api/v1/queues/${enc(name)}/dlq?limit=${enc(o.limit)}`,
        );
        out(Boolean(o.json), r, () =>
          r.messages.length === 0
            ? `No dead messages in '${name}'.`
            : table([
                ["ID", "REASON", "ATTEMPTS", "ENQUEUED", "BYTES", "ERROR"],
                ...r.messages.map((m) => [
                  m.id,
                  m.deadReason ?? "-",
                  m.attempts,
                  m.enqueuedAt,
                  m.bodyBytes,
                  (m.error ?? "").slice(0, 70),
                ]),
              ]),
        );
      }),
    );
  dlq
    .command("redrive")
    .description("Deliver dead messages again (all, or --id …), attempts reset")
    .argument("<name>", "queue name")
    .option("--id <id...>", "only these messages")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { id?: string[]; json?: boolean }) => {
        const r = await new Client().json(
          "POST",
          `/api/v1/queues/${enc(name)}/dlq/redrive`,
          o.id ? { ids: o.id } : {},
        );
        out(Boolean(o.json), r, () => `${r.redriven} message(s) sent back for delivery.`);
      }),
    );
  dlq
    .command("purge")
    .description("Delete a queue's dead messages")
    .argument("<name>", "queue name")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { json?: boolean }) => {
        const r = await new Client().json("DELETE", `/api/v1/queues/${enc(name)}/dlq`);
        out(Boolean(o.json), r, () => `${r.purged} dead message(s) deleted.`);
      }),
    );
}
