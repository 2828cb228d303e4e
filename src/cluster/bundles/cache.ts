/**
 * A node's bundle cache over shared storage: `put` stores a bundle once by content hash,
 * `dir` gives a local directory holding it, downloading it once per node (concurrent asks
 * share one download) and verifying the download against its hash — the shared storage is
 * not trusted to hand back what was put.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BadBundleError, type BundleFiles, decodeBundle, encodeBundle, hashOf } from "./archive.ts";
import { type BlobBackend, HASH } from "./types.ts";

/** Options of a node's cache. */
export interface BundleCacheOptions {
  /** The node's cache directory (one subdirectory per bundle hash). */
  dir: string;
  /**
   * Bytes of bundles kept on disk; past it the least recently asked-for bundles are removed.
   * @default 1 GiB
   */
  maxBytes?: number;
  /** Largest bundle accepted (put or downloaded), bytes. @default 64 MiB */
  maxBundleBytes?: number;
}

/** The per-node cache. */
export class BundleCache {
  private readonly backend: BlobBackend;
  private readonly root: string;
  private readonly maxBytes: number;
  private readonly maxBundleBytes: number;
  /** Bundles on disk: bytes and the last time they were asked for (insertion order = LRU order). */
  private readonly local = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<string>>();
  private total = 0;
  /** Downloads from shared storage so far. */
  downloads = 0;

  constructor(backend: BlobBackend, opts: BundleCacheOptions) {
    this.backend = backend;
    this.root = opts.dir;
    this.maxBytes = opts.maxBytes ?? 1024 ** 3;
    this.maxBundleBytes = opts.maxBundleBytes ?? 64 * 1024 ** 2;
    mkdirSync(this.root, { recursive: true });
    // What an earlier run left is still valid (directories appear only by rename, complete).
    for (const name of readdirSync(this.root)) {
      const path = join(this.root, name);
      if (!HASH.test(name)) {
        if (name.startsWith(".tmp-")) rmSync(path, { recursive: true, force: true });
        continue;
      }
      let bytes = 0;
      for (const f of readdirSync(path)) bytes += statSync(join(path, f)).size;
      this.local.set(name, bytes);
      this.total += bytes;
    }
  }

  /** Bytes of bundles on this node's disk. */
  get bytes(): number {
    return this.total;
  }

  /** Stores a bundle in shared storage and in this node's cache; returns its content hash. */
  async put(files: BundleFiles): Promise<string> {
    const blob = encodeBundle(files);
    if (blob.byteLength > this.maxBundleBytes) {
      throw new BadBundleError(
        `bundle of ${blob.byteLength} bytes exceeds the ${this.maxBundleBytes}-byte limit.`,
      );
    }
    const hash = hashOf(blob);
    await this.backend.put(hash, blob);
    if (!this.local.has(hash)) this.write(hash, files);
    return hash;
  }

  /** A local directory holding bundle `hash` (downloaded and verified on first use on this node). */
  async dir(hash: string): Promise<string> {
    if (!HASH.test(hash)) throw new BadBundleError(`bundle hash '${hash}' is not a sha256 hex digest.`);
    if (this.local.has(hash)) {
      this.touch(hash);
      return join(this.root, hash);
    }
    let p = this.inflight.get(hash);
    if (!p) {
      p = this.download(hash).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  private async download(hash: string): Promise<string> {
    const blob = await this.backend.get(hash);
    this.downloads++;
    if (!blob)
      throw new BadBundleError(
        `bundle ${hash} is not in shared storage (was it deployed on another cluster?).`,
      );
    if (blob.byteLength > this.maxBundleBytes) {
      throw new BadBundleError(
        `bundle ${hash} is ${blob.byteLength} bytes, over the ${this.maxBundleBytes}-byte limit.`,
      );
    }
    if (hashOf(blob) !== hash)
      throw new BadBundleError(`bundle ${hash} in shared storage does not match its hash: refused.`);
    this.write(hash, decodeBundle(blob));
    return join(this.root, hash);
  }

  /** Writes the files beside the cache and renames them in: a directory named by a hash is complete. */
  private write(hash: string, files: BundleFiles): void {
    const final = join(this.root, hash);
    let bytes = 0;
    for (const data of Object.values(files)) bytes += data.byteLength;
    if (!existsSync(final)) {
      const tmp = join(this.root, `.tmp-${hash}-${randomBytes(4).toString("hex")}`);
      mkdirSync(tmp);
      for (const [name, data] of Object.entries(files)) writeFileSync(join(tmp, name), data);
      try {
        renameSync(tmp, final);
      } catch (err) {
        // Another process on this node wrote it first: same hash, same files.
        rmSync(tmp, { recursive: true, force: true });
        if (!existsSync(final)) throw err;
      }
    }
    this.local.set(hash, bytes);
    this.total += bytes;
    this.evict(hash);
  }

  private touch(hash: string): void {
    const bytes = this.local.get(hash)!;
    this.local.delete(hash);
    this.local.set(hash, bytes);
  }

  /** Removes the least recently asked-for bundles (never `keep`) until the cache fits. */
  private evict(keep: string): void {
    for (const [hash, bytes] of this.local) {
      if (this.total <= this.maxBytes) break;
      if (hash === keep) continue;
      rmSync(join(this.root, hash), { recursive: true, force: true });
      this.local.delete(hash);
      this.total -= bytes;
    }
  }
}
