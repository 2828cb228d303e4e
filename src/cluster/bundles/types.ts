/**
 * The bundle seam for cluster mode: code stored once by content hash in shared storage
 * (NATS object store), cached on each node's disk.
 */

/** Shared storage of blobs by content hash. */
export interface BlobBackend {
  /** Stores `data` under `hash` (sha256 hex); storing an existing hash again is a no-op. */
  put(hash: string, data: Uint8Array): Promise<void>;
  /** The blob, or undefined when the storage has none under `hash`. */
  get(hash: string): Promise<Uint8Array | undefined>;
  has(hash: string): Promise<boolean>;
}

/** sha256 hex: the only form a bundle hash takes (it also names a cache directory). */
export const HASH = /^[0-9a-f]{64}$/;
