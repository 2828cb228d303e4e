/**
 * An in-memory view of deployed functions and versions, so the hot path never reads the
 * database. The control API updates it on every deploy, rollback and delete.
 */
import type { FunctionRecord, Store, VersionRecord } from "../store/types.ts";

/** The registry. */
export class Registry {
  private readonly functions = new Map<string, FunctionRecord>();
  private readonly versions = new Map<string, VersionRecord>();
  private readonly store: Store;

  constructor(store: Store) {
    this.store = store;
  }

  /** Loads every function and version of a tenant from the store. */
  async load(tenant: string): Promise<void> {
    for (const f of await this.store.listFunctions(tenant)) {
      this.functions.set(`${tenant}/${f.name}`, f);
      for (const v of await this.store.listVersions(tenant, f.name)) this.versions.set(vkey(v), v);
    }
  }

  getFunction(tenant: string, name: string): FunctionRecord | undefined {
    return this.functions.get(`${tenant}/${name}`);
  }

  all(): FunctionRecord[] {
    return [...this.functions.values()];
  }

  getVersion(tenant: string, name: string, version: number): VersionRecord | undefined {
    return this.versions.get(`${tenant}/${name}@${version}`);
  }

  /** Re-reads one function (and its versions) from the store after a change. */
  async refresh(tenant: string, name: string): Promise<void> {
    const f = await this.store.getFunction(tenant, name);
    for (const k of [...this.versions.keys()])
      if (k.startsWith(`${tenant}/${name}@`)) this.versions.delete(k);
    if (!f) {
      this.functions.delete(`${tenant}/${name}`);
      return;
    }
    this.functions.set(`${tenant}/${name}`, f);
    for (const v of await this.store.listVersions(tenant, name)) this.versions.set(vkey(v), v);
  }
}

function vkey(v: VersionRecord): string {
  return `${v.tenant}/${v.name}@${v.version}`;
}
