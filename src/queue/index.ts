/** The queue module's public entry: the seam and its embedded implementation. */
export { SqliteQueue } from "./sqlite/queue.ts";
export * from "./types.ts";
