/**
 * API keys: bearer tokens with scopes, stored hashed. The first start writes an admin key
 * to `<dataDir>/admin.key` (mode 0600) so the CLI on the same machine finds it.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NimbusError } from "../errors.ts";
import type { ApiKeyRecord, Store } from "../store/types.ts";

/** Key scopes. `admin` implies all others. */
export type Scope = "admin" | "deploy" | "invoke" | "read";

/** The file holding the admin key, inside the data directory. */
export const ADMIN_KEY_FILE = "admin.key";

function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Verifies bearer keys (cached after the first look-up). */
export class Auth {
  private readonly store: Store;
  private readonly cache = new Map<string, ApiKeyRecord | null>();

  constructor(store: Store) {
    this.store = store;
  }

  /** Creates the admin key on first start; returns it. */
  async ensureAdminKey(dataDir: string): Promise<string> {
    const file = join(dataDir, ADMIN_KEY_FILE);
    if (existsSync(file)) {
      const key = readFileSync(file, "utf8").trim();
      if (await this.store.findApiKey(hashKey(key))) return key;
    }
    const key = `nmb_${randomBytes(24).toString("base64url")}`;
    await this.store.addApiKey({
      id: randomUUID(),
      tenant: "default",
      hash: hashKey(key),
      scopes: ["admin"],
      createdAt: Date.now(),
    });
    writeFileSync(file, `${key}\n`, { mode: 0o600 });
    return key;
  }

  /** The key behind an `Authorization` header value, or undefined. */
  async verify(header: string | undefined): Promise<ApiKeyRecord | undefined> {
    if (!header) return undefined;
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) return undefined;
    const h = hashKey(m[1]!);
    let rec = this.cache.get(h);
    if (rec === undefined) {
      rec = (await this.store.findApiKey(h)) ?? null;
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(h, rec);
    }
    return rec ?? undefined;
  }

  /** Throws 401/403 unless the header holds a key with `scope`. */
  async require(header: string | undefined, scope: Scope): Promise<ApiKeyRecord> {
    const key = await this.verify(header);
    if (!key) {
      throw new NimbusError(
        "NIMBUS_UNAUTHORIZED",
        header
          ? "The API key is not valid. Use the key in <data dir>/admin.key, or set NIMBUS_TOKEN."
          : "A valid API key is required: send 'Authorization: Bearer <key>' (the CLI reads <data dir>/admin.key or NIMBUS_TOKEN).",
      );
    }
    if (!key.scopes.includes("admin") && !key.scopes.includes(scope)) {
      throw new NimbusError("NIMBUS_FORBIDDEN", `This API key lacks the '${scope}' scope.`);
    }
    return key;
  }
}
