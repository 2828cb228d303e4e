/**
 * The record writer thread: its own SQLite connection, one transaction per batch, so the
 * event loop that serves requests never waits on the disk.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { InstanceSample } from "../../observability/rollup.ts";
import type { InvocationRecord, LogRecord } from "../types.ts";
import { SqliteStore } from "./store.ts";

const store = new SqliteStore((workerData as { file: string }).file);

interface Message {
  id: number;
  invocations?: InvocationRecord[];
  logs?: LogRecord[];
  samples?: InstanceSample[];
  /** Rollup retention instead of a write. */
  compact?: { now: number; minuteKeepMs: number; hourKeepMs: number };
  /** Log retention instead of a write. */
  prune?: { olderThan: number; maxCharsPerFunction: number };
}

parentPort!.on("message", (m: Message) => {
  try {
    if (m.prune) {
      const deleted = store.pruneLogsSync(m.prune.olderThan, m.prune.maxCharsPerFunction);
      parentPort!.postMessage({ id: m.id, deleted });
      return;
    }
    if (m.compact) {
      const c = m.compact;
      const deleted = store.compactRollupSync(c.now, c.minuteKeepMs, c.hourKeepMs);
      parentPort!.postMessage({ id: m.id, deleted });
      return;
    }
    store.writeBatchSync(m.invocations ?? [], m.logs ?? [], m.samples ?? []);
    parentPort!.postMessage({ id: m.id });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
