/**
 * The embedded Queue on `node:sqlite`: its own database file in WAL mode with
 * `synchronous = FULL` (every commit is fsync'd), so an acknowledged enqueue survives a
 * crash of the process or the machine.
 *
 * Group commit: every write (enqueue, lease, ack, nack, …) made during one event-loop turn
 * joins one transaction, committed on the next `setImmediate`; the callers' promises
 * resolve only after that commit. A thousand enqueues in a turn cost one fsync.
 */
import { randomUUID } from "node:crypto";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  type EnqueueInput,
  type EnqueueResult,
  type LeasedMessage,
  type MessageInfo,
  type MessageState,
  type Queue,
  QueueFullError,
  type QueueOptions,
  type QueueStats,
} from "../types.ts";

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

type Row = Record<string, any>;

interface PendingOp {
  run: () => unknown;
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
}

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

const INFO_COLUMNS =
  "id, queue, state, attempts, enqueued_at, available_at, first_attempt_at, last_attempt_at, finished_at, result, error, dead_reason, meta, body_bytes";

/** The SQLite queue. */
export class SqliteQueue implements Queue {
  private readonly db: DatabaseSync;
  private readonly stmts = new Map<string, StatementSync>();
  private readonly clock: () => number;
  private readonly maxDepth: number;
  private readonly dedupWindowMs: number;
  private readonly retentionMs: number;
  /** Undelivered messages per queue (ready + leased), loaded on first use. */
  private readonly depth = new Map<string, number>();
  private pending: PendingOp[] = [];
  private scheduled = false;
  private closed = false;
  private readonly pruneTimer: NodeJS.Timeout;

  /** Opens (creating if needed) the queue database at `file` (`:memory:` for tests). */
  constructor(file: string, opts: QueueOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.maxDepth = opts.maxDepth ?? 100_000;
    this.dedupWindowMs = opts.dedupWindowMs ?? 86_400_000;
    this.retentionMs = opts.retentionMs ?? 86_400_000;
    this.db = new DatabaseSync(file);
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
    this.db.exec(SCHEMA);
    this.pruneTimer = setInterval(() => {
      this.prune().catch(() => {});
    }, 60_000);
    this.pruneTimer.unref();
  }

  private q(sql: string): StatementSync {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Queues a write for this turn's transaction. */
  private write<T>(run: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error("The queue is closed."));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.commit);
      }
    });
  }

  private readonly commit = (): void => {
    this.scheduled = false;
    const ops = this.pending;
    this.pending = [];
    if (ops.length === 0) return;
    const results: { ok: boolean; value: unknown }[] = [];
    try {
      this.db.exec("BEGIN IMMEDIATE");
      for (const op of ops) {
        // A savepoint per operation: one that throws (a full queue) undoes only itself.
        this.db.exec("SAVEPOINT op");
        try {
          results.push({ ok: true, value: op.run() });
          this.db.exec("RELEASE op");
        } catch (err) {
          this.db.exec("ROLLBACK TO op");
          this.db.exec("RELEASE op");
          results.push({ ok: false, value: err });
        }
      }
      this.db.exec("COMMIT");
    } catch (err) {
      try {
        this.db.exec("ROLLBACK");
      } catch {}
      // Counts may have moved inside the rolled-back transaction: reload them on next use.
      this.depth.clear();
      for (const op of ops) op.reject(err);
      return;
    }
    for (let i = 0; i < ops.length; i++) {
      const r = results[i]!;
      if (r.ok) ops[i]!.resolve(r.value);
      else ops[i]!.reject(r.value);
    }
  };

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

  enqueue(queue: string, items: EnqueueInput[], opts: { maxDepth?: number } = {}): Promise<EnqueueResult[]> {
    const maxDepth = opts.maxDepth ?? this.maxDepth;
    return this.write(() => {
      const now = this.clock();
      const out: EnqueueResult[] = [];
      let added = 0;
      for (const item of items) {
        if (item.dedupKey !== undefined) {
          const prior = this.q("SELECT id, enqueued_at FROM messages WHERE queue = ? AND dedup_key = ?").get(
            queue,
            item.dedupKey,
          ) as Row | undefined;
          if (prior) {
            if (Number(prior.enqueued_at) >= now - this.dedupWindowMs) {
              out.push({ id: prior.id, duplicate: true });
              continue;
            }
            this.q("UPDATE messages SET dedup_key = NULL WHERE id = ?").run(prior.id);
          }
        }
        if (this.depthOf(queue) + added >= maxDepth) throw new QueueFullError(queue, maxDepth);
        const id = item.id ?? randomUUID();
        const body = item.body;
        this.q(
          `INSERT INTO messages (id, queue, state, body, body_bytes, meta, enqueued_at, available_at, dedup_key)
           VALUES (?, ?, 'ready', ?, ?, ?, ?, ?, ?)`,
        ).run(
          id,
          queue,
          body,
          body.byteLength,
          item.meta ?? "{}",
          now,
          now + (item.delayMs ?? 0),
          item.dedupKey ?? null,
        );
        added++;
        out.push({ id, duplicate: false });
      }
      this.moveDepth(queue, added);
      return out;
    });
  }

  lease(queue: string, max: number, leaseMs: number): Promise<LeasedMessage[]> {
    if (max <= 0) return Promise.resolve([]);
    return this.write(() => {
      const now = this.clock();
      const rows = this.q(
        `SELECT seq, id, body, meta, attempts, enqueued_at FROM messages
         WHERE queue = ? AND state IN ('ready', 'leased') AND available_at <= ?
         ORDER BY available_at, seq LIMIT ?`,
      ).all(queue, now, max) as Row[];
      const out: LeasedMessage[] = [];
      const until = now + leaseMs;
      for (const r of rows) {
        const token = randomUUID();
        this.q(
          `UPDATE messages SET state = 'leased', attempts = attempts + 1, lease_token = ?, available_at = ?,
             first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ? WHERE seq = ?`,
        ).run(token, until, now, now, r.seq);
        out.push({
          id: r.id,
          queue,
          body: Buffer.from(r.body as Uint8Array),
          meta: r.meta,
          attempts: Number(r.attempts) + 1,
          enqueuedAt: Number(r.enqueued_at),
          token,
          leaseUntil: until,
        });
      }
      return out;
    });
  }

  extend(id: string, token: string, leaseMs: number): Promise<boolean> {
    return this.write(() => {
      const r = this.q(
        "UPDATE messages SET available_at = ? WHERE id = ? AND state = 'leased' AND lease_token = ?",
      ).run(this.clock() + leaseMs, id, token);
      return Number(r.changes) === 1;
    });
  }

  /** Ends a lease; moves the queue's depth when the message leaves the undelivered set. */
  private finish(id: string, token: string, sql: string, params: (string | number | null)[]): boolean {
    const row = this.q(
      "SELECT queue FROM messages WHERE id = ? AND state = 'leased' AND lease_token = ?",
    ).get(id, token) as Row | undefined;
    if (!row) return false;
    this.q(sql).run(...params, id);
    if (!sql.includes("'ready'")) this.moveDepth(row.queue, -1);
    return true;
  }

  ack(id: string, token: string, result?: string): Promise<boolean> {
    return this.write(() =>
      this.finish(
        id,
        token,
        "UPDATE messages SET state = 'succeeded', lease_token = NULL, finished_at = ?, result = ?, body = x'' WHERE id = ?",
        [this.clock(), result ?? null],
      ),
    );
  }

  nack(
    id: string,
    token: string,
    delayMs: number,
    error: string,
    opts: { uncount?: boolean } = {},
  ): Promise<boolean> {
    const back = opts.uncount ? 1 : 0;
    return this.write(() =>
      this.finish(
        id,
        token,
        "UPDATE messages SET state = 'ready', lease_token = NULL, available_at = ?, error = ?, attempts = max(0, attempts - ?) WHERE id = ?",
        [this.clock() + Math.max(0, delayMs), error, back],
      ),
    );
  }

  deadLetter(id: string, token: string, error: string, reason: "failed" | "expired"): Promise<boolean> {
    return this.write(() =>
      this.finish(
        id,
        token,
        "UPDATE messages SET state = 'dead', lease_token = NULL, finished_at = ?, error = ?, dead_reason = ? WHERE id = ?",
        [this.clock(), error, reason],
      ),
    );
  }

  async get(id: string): Promise<MessageInfo | undefined> {
    const r = this.q(`SELECT ${INFO_COLUMNS} FROM messages WHERE id = ?`).get(id) as Row | undefined;
    return r ? toInfo(r) : undefined;
  }

  async list(queue: string, opts: { state?: MessageState; limit?: number } = {}): Promise<MessageInfo[]> {
    const limit = Math.min(Math.max(1, opts.limit ?? 100), 10_000);
    const rows = opts.state
      ? this.q(
          `SELECT ${INFO_COLUMNS} FROM messages WHERE queue = ? AND state = ? ORDER BY seq DESC LIMIT ?`,
        ).all(queue, opts.state, limit)
      : this.q(`SELECT ${INFO_COLUMNS} FROM messages WHERE queue = ? ORDER BY seq DESC LIMIT ?`).all(
          queue,
          limit,
        );
    return (rows as Row[]).map(toInfo);
  }

  async body(id: string): Promise<Buffer | undefined> {
    const r = this.q("SELECT body FROM messages WHERE id = ?").get(id) as Row | undefined;
    return r ? Buffer.from(r.body as Uint8Array) : undefined;
  }

  redrive(queue: string, ids?: string[]): Promise<number> {
    return this.write(() => {
      const now = this.clock();
      const set = `UPDATE messages SET state = 'ready', attempts = 0, enqueued_at = ?, available_at = ?,
        finished_at = NULL, dead_reason = NULL, first_attempt_at = NULL, last_attempt_at = NULL`;
      let n = 0;
      if (ids === undefined) {
        n = Number(this.q(`${set} WHERE queue = ? AND state = 'dead'`).run(now, now, queue).changes);
      } else {
        for (const id of ids)
          n += Number(
            this.q(`${set} WHERE queue = ? AND state = 'dead' AND id = ?`).run(now, now, queue, id).changes,
          );
      }
      this.moveDepth(queue, n);
      return n;
    });
  }

  purge(queue: string, which: "dead" | "ready"): Promise<number> {
    return this.write(() => {
      const n = Number(
        this.q("DELETE FROM messages WHERE queue = ? AND state = ?").run(queue, which).changes,
      );
      if (which === "ready") this.moveDepth(queue, -n);
      return n;
    });
  }

  async stats(queue: string): Promise<QueueStats> {
    const now = this.clock();
    const rows = this.q(
      `SELECT state, (state = 'ready' AND available_at > ?) AS delayed, count(*) AS n
       FROM messages WHERE queue = ? GROUP BY state, delayed`,
    ).all(now, queue) as Row[];
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

  async queuesWithWork(): Promise<string[]> {
    const rows = this.q(
      "SELECT DISTINCT queue FROM messages WHERE state IN ('ready', 'leased')",
    ).all() as Row[];
    return rows.map((r) => r.queue as string);
  }

  /** Deletes succeeded messages older than the retention window. */
  prune(): Promise<number> {
    return this.write(() =>
      Number(
        this.q("DELETE FROM messages WHERE state = 'succeeded' AND finished_at < ?").run(
          this.clock() - this.retentionMs,
        ).changes,
      ),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.pruneTimer);
    // Commit what this turn queued, then refuse more.
    this.commit();
    this.closed = true;
    this.db.close();
  }
}
