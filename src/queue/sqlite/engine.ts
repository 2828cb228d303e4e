/**
 * The SQLite queue's engine: one connection, synchronous, applying a batch of operations
 * in one transaction (a savepoint each, so one that fails undoes only itself). It runs on
 * the queue's writer thread (or inline in tests); the time of every operation is passed in.
 */
import { randomUUID } from "node:crypto";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { LeasedMessage, MessageInfo, MessageState, QueueOverview, QueueStats } from "../types.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  queue TEXT NOT NULL,
  state TEXT NOT NULL,
  body BLOB NOT NULL,
  body_bytes INTEGER NOT NULL,
  meta TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  enqueued_at INTEGER NOT NULL,
  available_at INTEGER NOT NULL,
  lease_token TEXT,
  first_attempt_at INTEGER,
  last_attempt_at INTEGER,
  finished_at INTEGER,
  dedup_key TEXT,
  result TEXT,
  error TEXT,
  dead_reason TEXT);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, available_at, seq) WHERE state IN ('ready', 'leased');
CREATE INDEX IF NOT EXISTS messages_queue_state ON messages (queue, state);
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedup ON messages (queue, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_finished ON messages (state, finished_at);
`;

/** One operation, as sent to the engine (plain data: it crosses a thread boundary). */
export type Op =
  | {
      t: "enqueue";
      queue: string;
      now: number;
      maxDepth: number;
      dedupWindowMs: number;
      items: { id: string; body: Uint8Array; meta: string; delayMs: number; dedupKey: string | null }[];
    }
  | { t: "lease"; queue: string; now: number; max: number; leaseMs: number }
  | { t: "extend"; id: string; token: string; now: number; leaseMs: number }
  | { t: "ack"; id: string; token: string; now: number; result: string | null }
  | { t: "nack"; id: string; token: string; now: number; delayMs: number; error: string; uncount: boolean }
  | { t: "dead"; id: string; token: string; now: number; error: string; reason: "failed" | "expired" }
  | { t: "redrive"; queue: string; now: number; ids: string[] | null }
  | { t: "purge"; queue: string; which: "dead" | "ready" }
  | { t: "prune"; before: number }
  | { t: "get"; id: string }
  | { t: "list"; queue: string; state: MessageState | null; limit: number }
  | { t: "body"; id: string }
  | { t: "stats"; queue: string; now: number }
  | { t: "work" }
  | { t: "overview"; now: number };

/** An operation's outcome: a value, or an error to rethrow on the caller's side. */
export type OpResult =
  | { ok: true; value: unknown }
  | { ok: false; full?: { queue: string; depth: number }; message: string };

type Row = Record<string, any>;

const INFO_COLUMNS =
  "id, queue, state, attempts, enqueued_at, available_at, first_attempt_at, last_attempt_at, finished_at, result, error, dead_reason, meta, body_bytes";

function toInfo(r: Row): MessageInfo {
  return {
    id: r.id,
    queue: r.queue,
    state: r.state as MessageState,
    attempts: Number(r.attempts),
    enqueuedAt: Number(r.enqueued_at),
    availableAt: Number(r.available_at),
    firstAttemptAt: r.first_attempt_at === null ? null : Number(r.first_attempt_at),
    lastAttemptAt: r.last_attempt_at === null ? null : Number(r.last_attempt_at),
    finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    result: r.result ?? null,
    error: r.error ?? null,
    deadReason: r.dead_reason ?? null,
    meta: r.meta,
    bodyBytes: Number(r.body_bytes),
  };
}

class Full extends Error {
  readonly queue: string;
  readonly depth: number;
  constructor(queue: string, depth: number) {
    super(`Queue '${queue}' is full (${depth}).`);
    this.queue = queue;
    this.depth = depth;
  }
}

/** The engine. */
export class QueueEngine {
  private readonly db: DatabaseSync;
  private readonly stmts = new Map<string, StatementSync>();
  /** Undelivered messages per queue (ready + leased), loaded on first use. */
  private readonly depth = new Map<string, number>();

  /** Opens the database with `synchronous = FULL`: every commit is fsync'd. */
  constructor(file: string) {
    this.db = new DatabaseSync(file);
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
    this.db.exec(SCHEMA);
  }

  private q(sql: string): StatementSync {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Applies a batch in one transaction; results in order. Throws only if the commit fails. */
  runBatch(ops: Op[]): OpResult[] {
    const results: OpResult[] = [];
    try {
      this.db.exec("BEGIN IMMEDIATE");
      for (const op of ops) {
        this.db.exec("SAVEPOINT op");
        try {
          results.push({ ok: true, value: this.apply(op) });
          this.db.exec("RELEASE op");
        } catch (err) {
          this.db.exec("ROLLBACK TO op");
          this.db.exec("RELEASE op");
          results.push(
            err instanceof Full
              ? { ok: false, full: { queue: err.queue, depth: err.depth }, message: err.message }
              : { ok: false, message: (err as Error).message },
          );
        }
      }
      this.db.exec("COMMIT");
    } catch (err) {
      try {
        this.db.exec("ROLLBACK");
      } catch {}
      // Counts may have moved inside the rolled-back transaction: reload them on next use.
      this.depth.clear();
      throw err;
    }
    return results;
  }

  private depthOf(queue: string): number {
    let d = this.depth.get(queue);
    if (d === undefined) {
      const row = this.q(
        "SELECT count(*) AS n FROM messages WHERE queue = ? AND state IN ('ready', 'leased')",
      ).get(queue) as Row;
      d = Number(row.n);
      this.depth.set(queue, d);
    }
    return d;
  }

  private moveDepth(queue: string, delta: number): void {
    this.depth.set(queue, this.depthOf(queue) + delta);
  }

  /** Ends a lease held with `token`; `leaves` when the message leaves the undelivered set. */
  private finish(
    id: string,
    token: string,
    sql: string,
    params: (string | number | null)[],
    leaves: boolean,
  ): boolean {
    const row = this.q(
      "SELECT queue FROM messages WHERE id = ? AND state = 'leased' AND lease_token = ?",
    ).get(id, token) as Row | undefined;
    if (!row) return false;
    this.q(sql).run(...params, id);
    if (leaves) this.moveDepth(row.queue, -1);
    return true;
  }

  private apply(op: Op): unknown {
    switch (op.t) {
      case "enqueue": {
        const out: { id: string; duplicate: boolean }[] = [];
        let added = 0;
        for (const item of op.items) {
          if (item.dedupKey !== null) {
            const prior = this.q(
              "SELECT id, enqueued_at FROM messages WHERE queue = ? AND dedup_key = ?",
            ).get(op.queue, item.dedupKey) as Row | undefined;
            if (prior) {
              if (Number(prior.enqueued_at) >= op.now - op.dedupWindowMs) {
                out.push({ id: prior.id, duplicate: true });
                continue;
              }
              this.q("UPDATE messages SET dedup_key = NULL WHERE id = ?").run(prior.id);
            }
          }
          if (this.depthOf(op.queue) + added >= op.maxDepth) throw new Full(op.queue, op.maxDepth);
          this.q(
            `INSERT INTO messages (id, queue, state, body, body_bytes, meta, enqueued_at, available_at, dedup_key)
             VALUES (?, ?, 'ready', ?, ?, ?, ?, ?, ?)`,
          ).run(
            item.id,
            op.queue,
            item.body,
            item.body.byteLength,
            item.meta,
            op.now,
            op.now + item.delayMs,
            item.dedupKey,
          );
          added++;
          out.push({ id: item.id, duplicate: false });
        }
        this.moveDepth(op.queue, added);
        return out;
      }
      case "lease": {
        const rows = this.q(
          `SELECT seq, id, body, meta, attempts, enqueued_at FROM messages
           WHERE queue = ? AND state IN ('ready', 'leased') AND available_at <= ?
           ORDER BY available_at, seq LIMIT ?`,
        ).all(op.queue, op.now, op.max) as Row[];
        const until = op.now + op.leaseMs;
        const out: (Omit<LeasedMessage, "body"> & { body: Uint8Array })[] = [];
        for (const r of rows) {
          const token = randomUUID();
          this.q(
            `UPDATE messages SET state = 'leased', attempts = attempts + 1, lease_token = ?, available_at = ?,
               first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ? WHERE seq = ?`,
          ).run(token, until, op.now, op.now, r.seq);
          out.push({
            id: r.id,
            queue: op.queue,
            body: r.body as Uint8Array,
            meta: r.meta,
            attempts: Number(r.attempts) + 1,
            enqueuedAt: Number(r.enqueued_at),
            token,
            leaseUntil: until,
          });
        }
        return out;
      }
      case "extend":
        return (
          Number(
            this.q(
              "UPDATE messages SET available_at = ? WHERE id = ? AND state = 'leased' AND lease_token = ?",
            ).run(op.now + op.leaseMs, op.id, op.token).changes,
          ) === 1
        );
      case "ack":
        return this.finish(
          op.id,
          op.token,
          "UPDATE messages SET state = 'succeeded', lease_token = NULL, finished_at = ?, result = ?, body = x'' WHERE id = ?",
          [op.now, op.result],
          true,
        );
      case "nack":
        return this.finish(
          op.id,
          op.token,
          "UPDATE messages SET state = 'ready', lease_token = NULL, available_at = ?, error = ?, attempts = max(0, attempts - ?) WHERE id = ?",
          [op.now + Math.max(0, op.delayMs), op.error, op.uncount ? 1 : 0],
          false,
        );
      case "dead":
        return this.finish(
          op.id,
          op.token,
          "UPDATE messages SET state = 'dead', lease_token = NULL, finished_at = ?, error = ?, dead_reason = ? WHERE id = ?",
          [op.now, op.error, op.reason],
          true,
        );
      case "redrive": {
        const set = `UPDATE messages SET state = 'ready', attempts = 0, enqueued_at = ?, available_at = ?,
          finished_at = NULL, dead_reason = NULL, first_attempt_at = NULL, last_attempt_at = NULL`;
        let n = 0;
        if (op.ids === null) {
          n = Number(
            this.q(`${set} WHERE queue = ? AND state = 'dead'`).run(op.now, op.now, op.queue).changes,
          );
        } else {
          for (const id of op.ids)
            n += Number(
              this.q(`${set} WHERE queue = ? AND state = 'dead' AND id = ?`).run(op.now, op.now, op.queue, id)
                .changes,
            );
        }
        this.moveDepth(op.queue, n);
        return n;
      }
      case "purge": {
        const n = Number(
          this.q("DELETE FROM messages WHERE queue = ? AND state = ?").run(op.queue, op.which).changes,
        );
        if (op.which === "ready") this.moveDepth(op.queue, -n);
        return n;
      }
      case "prune":
        return Number(
          this.q("DELETE FROM messages WHERE state = 'succeeded' AND finished_at < ?").run(op.before).changes,
        );
      case "get": {
        const r = this.q(`SELECT ${INFO_COLUMNS} FROM messages WHERE id = ?`).get(op.id) as Row | undefined;
        return r ? toInfo(r) : undefined;
      }
      case "list": {
        const rows = op.state
          ? this.q(
              `SELECT ${INFO_COLUMNS} FROM messages WHERE queue = ? AND state = ? ORDER BY seq DESC LIMIT ?`,
            ).all(op.queue, op.state, op.limit)
          : this.q(`SELECT ${INFO_COLUMNS} FROM messages WHERE queue = ? ORDER BY seq DESC LIMIT ?`).all(
              op.queue,
              op.limit,
            );
        return (rows as Row[]).map(toInfo);
      }
      case "body": {
        const r = this.q("SELECT body FROM messages WHERE id = ?").get(op.id) as Row | undefined;
        return r ? (r.body as Uint8Array) : undefined;
      }
      case "stats": {
        const rows = this.q(
          `SELECT state, (state = 'ready' AND available_at > ?) AS delayed, count(*) AS n
           FROM messages WHERE queue = ? GROUP BY state, delayed`,
        ).all(op.now, op.queue) as Row[];
        const s: QueueStats = { ready: 0, delayed: 0, leased: 0, dead: 0, succeeded: 0 };
        for (const r of rows) {
          const n = Number(r.n);
          if (r.state === "ready") {
            if (Number(r.delayed)) s.delayed += n;
            else s.ready += n;
          } else if (r.state === "leased") s.leased += n;
          else if (r.state === "dead") s.dead += n;
          else if (r.state === "succeeded") s.succeeded += n;
        }
        return s;
      }
      case "overview": {
        const rows = this.q(
          `SELECT queue, state, (state = 'ready' AND available_at > ?) AS delayed, count(*) AS n,
             min(enqueued_at) AS oldest
           FROM messages WHERE state IN ('ready', 'leased', 'dead') GROUP BY queue, state, delayed`,
        ).all(op.now) as Row[];
        const by = new Map<string, QueueOverview>();
        for (const r of rows) {
          const queue = String(r.queue);
          let o = by.get(queue);
          if (!o) {
            o = { queue, ready: 0, delayed: 0, leased: 0, dead: 0, oldestAt: undefined };
            by.set(queue, o);
          }
          const n = Number(r.n);
          if (r.state === "dead") o.dead += n;
          else {
            if (r.state === "leased") o.leased += n;
            else if (Number(r.delayed)) o.delayed += n;
            else o.ready += n;
            const oldest = Number(r.oldest);
            if (o.oldestAt === undefined || oldest < o.oldestAt) o.oldestAt = oldest;
          }
        }
        return [...by.values()];
      }
      case "work":
        return (
          this.q("SELECT DISTINCT queue FROM messages WHERE state IN ('ready', 'leased')").all() as Row[]
        ).map((r) => r.queue as string);
    }
  }

  close(): void {
    this.db.close();
  }
}
