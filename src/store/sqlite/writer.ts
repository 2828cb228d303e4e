/**
 * The record writer thread: its own SQLite connection, one transaction per batch, so the
 * event loop that serves requests never waits on the disk.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { InvocationRecord, LogRecord } from "../types.ts";
import { SqliteStore } from "./store.ts";

const store = new SqliteStore((workerData as { file: string }).file);

parentPort!.on("message", (m: { id: number; invocations: InvocationRecord[]; logs: LogRecord[] }) => {
  try {
    store.writeBatchSync(m.invocations, m.logs);
    parentPort!.postMessage({ id: m.id });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
