import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runStoreContract } from "../contract.ts";
import type { Store } from "../types.ts";
import { SqliteStore } from "./store.ts";

/** A fresh database file; `writer` moves record writes to the writer thread (as `serve` does). */
const sqlite = (writer: boolean) => async () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-store-"));
  const file = join(dir, "nimbus.db");
  const others: Store[] = [];
  const store = new SqliteStore(file);
  if (writer) store.startWriter();
  return {
    store,
    another: async () => {
      const s = new SqliteStore(file);
      others.push(s);
      return s;
    },
    dispose: async () => {
      for (const s of others) await s.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

runStoreContract("sqlite", sqlite(false));
runStoreContract("sqlite (writer thread)", sqlite(true));
