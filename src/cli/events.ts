/**
 * CLI commands for async invocations and dead-letter queues: `nimbus invocations <name>`,
 * `nimbus invocation <id>`, `nimbus dlq ls|show|redrive|purge <name>`.
 */
import type { Command } from "commander";
import { Client, fromBody } from "./client.ts";

/** Formatting helpers main.ts owns (one place formats output). */
export interface CliKit {
  out: (json: boolean, data: unknown, human: () => string) => void;
  table: (rows: (string | number)[][]) => string;
  action: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;
}

const enc = encodeURIComponent;
const t = (iso: string | null) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "-");
const msOr = (n: number | null) => (n === null ? "-" : `${Math.round(n)} ms`);

/**
 * Sends an async invocation: the body is the event (JSON). Returns the id.
 * Used by `nimbus invoke <name> --async`.
 */
export async function invokeAsync(
  name: string,
  body: Buffer | undefined,
  opts: { version?: string; idempotencyKey?: string },
): Promise<{ invocationId: string; duplicate: boolean }> {
  const q = opts.version ? `?version=${enc(opts.version)}` : "";
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.idempotencyKey) headers["idempotency-key"] = opts.idempotencyKey;
  const res = await new Client().raw("POST", `/api/v1/functions/${enc(name)}/invocations${q}`, {
    body: body && body.length > 0 ? new Uint8Array(body) : "{}",
    headers,
  });
  const text = await res.text();
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: { code: "NIMBUS_INTERNAL", message: text } };
  }
  if (res.status !== 202) throw fromBody(res.status, parsed);
  return parsed;
}

/** Adds the commands to `program`. */
export function registerEventCommands(program: Command, kit: CliKit): void {
  const { out, table, action } = kit;
  const rows = (list: any[]) =>
    table([
      ["ID", "STATE", "ATTEMPTS", "ENQUEUED", "QUEUE WAIT", "END-TO-END", "ERROR"],
      ...list.map((i) => [
        i.invocationId,
        i.state,
        i.attempts,
        t(i.enqueuedAt),
        msOr(i.queueWaitMs),
        msOr(i.endToEndMs),
        (i.error ?? "").slice(0, 60),
      ]),
    ]);

  program
    .command("invocations")
    .description("Recent async invocations of a function with their state (newest first)")
    .argument("<name>")
    .option("-n, --limit <n>", "how many", "20")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { limit: string; json?: boolean }) => {
        const r = await new Client().json<any>(
          "GET",
          `/api/v1/functions/${enc(name)}/async-invocations?limit=${enc(o.limit)}`,
        );
        out(Boolean(o.json), r, () => {
          const s = r.stats;
          const head = `queue: ${s.ready} ready, ${s.delayed} waiting to retry, ${s.leased} running, ${s.dead} dead-lettered, ${s.succeeded} succeeded (kept 24 h)`;
          return r.invocations.length === 0
            ? `${head}\nNo async invocations yet.`
            : `${head}\n${rows(r.invocations)}`;
        });
      }),
    );

  program
    .command("invocation")
    .description("One async invocation: state, attempts, timings, result or error")
    .argument("<id>")
    .option("--json", "print JSON")
    .action(
      action(async (id: string, o: { json?: boolean }) => {
        const i = await new Client().json<any>("GET", `/api/v1/invocations/${enc(id)}`);
        out(Boolean(o.json), i, () =>
          [
            `invocation ${i.invocationId} of ${i.function}: ${i.state}`,
            `  attempts:    ${i.attempts}`,
            `  enqueued:    ${t(i.enqueuedAt)}`,
            `  first try:   ${t(i.firstAttemptAt)}  (queue wait ${msOr(i.queueWaitMs)})`,
            `  finished:    ${t(i.finishedAt)}  (end-to-end ${msOr(i.endToEndMs)})`,
            ...(i.nextAttemptAt ? [`  next try:    ${t(i.nextAttemptAt)}`] : []),
            ...(i.result ? [`  result:      ${i.result.status} ${i.result.body.slice(0, 200)}`] : []),
            ...(i.error ? [`  error:       ${i.error}`] : []),
          ].join("\n"),
        );
      }),
    );

  const dlq = program.command("dlq").description("A function's dead-letter queue: ls, show, redrive, purge");
  dlq
    .command("ls")
    .description("Dead-lettered events of a function")
    .argument("<name>")
    .option("-n, --limit <n>", "how many", "100")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { limit: string; json?: boolean }) => {
        const r = await new Client().json<any>(
          "GET",
          `/api/v1/functions/${enc(name)}/dlq?limit=${enc(o.limit)}`,
        );
        out(Boolean(o.json), r, () =>
          r.events.length === 0 ? "The dead-letter queue is empty." : rows(r.events),
        );
      }),
    );
  dlq
    .command("show")
    .description("One dead-lettered event with its payload")
    .argument("<name>")
    .argument("<id>")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, id: string, o: { json?: boolean }) => {
        const r = await new Client().json<any>("GET", `/api/v1/functions/${enc(name)}/dlq/${enc(id)}`);
        out(Boolean(o.json), r, () =>
          [
            `event ${r.invocationId} (${r.state}, ${r.attempts} attempts): ${r.error ?? ""}`,
            `  request: ${r.request?.kind ?? "?"} ${r.request?.method ?? ""} ${r.request?.path ?? ""}`,
            `  payload: ${Buffer.from(r.payloadBase64, "base64").toString("utf8").slice(0, 2000)}`,
          ].join("\n"),
        );
      }),
    );
  dlq
    .command("redrive")
    .description("Send dead-lettered events back for delivery (all, or the ids given)")
    .argument("<name>")
    .argument("[ids...]")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, ids: string[], o: { json?: boolean }) => {
        const r = await new Client().json<any>(
          "POST",
          `/api/v1/functions/${enc(name)}/dlq/redrive`,
          ids.length > 0 ? { ids } : {},
        );
        out(Boolean(o.json), r, () => `${r.redriven} event(s) sent back for delivery.`);
      }),
    );
  dlq
    .command("purge")
    .description("Delete every dead-lettered event of a function")
    .argument("<name>")
    .option("--json", "print JSON")
    .action(
      action(async (name: string, o: { json?: boolean }) => {
        const r = await new Client().json<any>("DELETE", `/api/v1/functions/${enc(name)}/dlq`);
        out(Boolean(o.json), r, () => `${r.purged} event(s) deleted.`);
      }),
    );
}
