/** Bundles in a NATS JetStream object store bucket (replicated like the queue's streams). */
import { StorageType } from "@nats-io/jetstream";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import type { BlobBackend } from "./types.ts";

/** Options of the object store backend. */
export interface NatsBlobOptions {
  /** Bucket name. @default "nimbus-bundles" */
  bucket?: string;
  /** Replicas of the bucket. @default 1 */
  replicas?: number;
  /** Largest blob accepted, bytes (also the bucket's max object size… checked here). @default 64 MiB */
  maxBytes?: number;
}

/** The object store backend. Create with {@link NatsBlobBackend.open}. */
export class NatsBlobBackend implements BlobBackend {
  private readonly os: ObjectStore;
  private readonly maxBytes: number;

  private constructor(os: ObjectStore, maxBytes: number) {
    this.os = os;
    this.maxBytes = maxBytes;
  }

  /** Opens (creating if needed) the bucket over an existing connection. */
  static async open(nc: NatsConnection, opts: NatsBlobOptions = {}): Promise<NatsBlobBackend> {
    const os = await new Objm(nc).create(opts.bucket ?? "nimbus-bundles", {
      storage: StorageType.File,
      replicas: opts.replicas ?? 1,
    });
    return new NatsBlobBackend(os, opts.maxBytes ?? 64 * 1024 * 1024);
  }

  async put(hash: string, data: Uint8Array): Promise<void> {
    if (data.byteLength > this.maxBytes)
      throw new Error(`bundle of ${data.byteLength} bytes exceeds ${this.maxBytes}.`);
    if (await this.has(hash)) return;
    await this.os.putBlob({ name: hash }, data);
  }

  async get(hash: string): Promise<Uint8Array | undefined> {
    const info = await this.os.info(hash);
    if (!info || info.deleted) return undefined;
    // Refuse before reading: the bucket is shared, its contents untrusted.
    if (info.size > this.maxBytes)
      throw new Error(`stored bundle ${hash} is ${info.size} bytes, over ${this.maxBytes}.`);
    return (await this.os.getBlob(hash)) ?? undefined;
  }

  async has(hash: string): Promise<boolean> {
    const info = await this.os.info(hash);
    return !!info && !info.deleted;
  }
}
