/**
 * An in-memory view of deployed functions and versions, so the hot path never reads the
 * database. The control API updates it on every deploy, rollback and delete.
 *
 * Lookups are two Map reads whatever the number of functions, and a deploy touches only its
 * own function's entry (versions are kept per function, not in one flat map that a refresh
 * would have to scan), so 10,000 deployed functions cost no more per request than 10.
 */
import type { FunctionRecord, Store, VersionRecord } from "../store/types.ts";

interface Entry {
  fn: FunctionRecord;
  versions: Map<number, VersionRecord>;
}

/** The registry. */
export class Registry {
  private readonly entries = new Map<string, Entry>();
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  /** Loads every function and version of a tenant from the store. */
  async load(tenant: string): Promise<void> {
    for (const f of await this.store.listFunctions(tenant)) {
      this.entries.set(`${tenant}/${f.name}`, {
        fn: f,
        versions: byNumber(await this.store.listVersions(tenant, f.name)),
      });
    }
  }

  getFunction(tenant: string, name: string): FunctionRecord | undefined {
    return this.entries.get(`${tenant}/${name}`)?.fn;
  }

  all(): FunctionRecord[] {
    return [...this.entries.values()].map((e) => e.fn);
  }

  getVersion(tenant: string, name: string, version: number): VersionRecord | undefined {
    return this.entries.get(`${tenant}/${name}`)?.versions.get(version);
  }

  /** Re-reads one function (and its versions) from the store after a change. */
  async refresh(tenant: string, name: string): Promise<void> {
    const key = `${tenant}/${name}`;
    const f = await this.store.getFunction(tenant, name);
    if (!f) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, { fn: f, versions: byNumber(await this.store.listVersions(tenant, name)) });
  }
}

function byNumber(list: VersionRecord[]): Map<number, VersionRecord> {
  const m = new Map<number, VersionRecord>();
  for (const v of list) m.set(v.version, v);
  return m;
}
