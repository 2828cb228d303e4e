import { runStoreContract } from "../contract.ts";
import type { Store } from "../types.ts";
import { dropSchema, pgUnavailable, randomSchema, TEST_PG } from "./pg-test-db.ts";
import { PostgresStore } from "./store.ts";

const skip = await pgUnavailable();
if (skip) console.log(`# skipped the PostgreSQL store contract: ${skip}`);
else
  runStoreContract("postgres", async () => {
    const schema = randomSchema();
    const open = () => PostgresStore.open({ connectionString: TEST_PG, schema, maxConnections: 4 });
    const others: Store[] = [];
    return {
      store: await open(),
      another: async () => {
        const s = await open();
        others.push(s);
        return s;
      },
      dispose: async () => {
        for (const s of others) await s.close().catch(() => {});
        await dropSchema(schema);
      },
    };
  });
