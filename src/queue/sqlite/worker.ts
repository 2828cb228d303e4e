/**
 * The queue's writer thread: applies each batch the main thread sends in one transaction
 * (one fsync) and answers with the results. While it commits, the main thread keeps
 * serving and collects the next batch: group commit without blocking the event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type Op, QueueEngine } from "./engine.ts";

const engine = new QueueEngine((workerData as { file: string }).file);

parentPort!.on("message", (m: { id: number; ops: Op[] } | { close: true }) => {
  if ("close" in m) {
    engine.close();
    parentPort!.postMessage({ closed: true });
    return;
  }
  try {
    parentPort!.postMessage({ id: m.id, results: engine.runBatch(m.ops) });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
