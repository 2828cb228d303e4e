/**
 * One bundle (the files of a version's code directory) as one blob, and its content hash.
 * The encoding is canonical (files sorted by name), so identical code gives the same hash on
 * every node. Decoding treats the blob as untrusted: names are flat and plain, sizes bounded.
 */
import { createHash } from "node:crypto";

/** Files of a bundle by name (`index.mjs`, `index.mjs.map`). */
export type BundleFiles = Record<string, Uint8Array>;

const MAGIC = Buffer.from("NIMBUS-BUNDLE-1\n");
/** A file name: flat (no directories), no leading dot, at most 100 characters. */
export const FILE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/;
/** Files in a bundle, at most. */
export const MAX_FILES = 64;

/** Thrown when a blob is not a well-formed bundle or does not match its hash. */
export class BadBundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadBundleError";
  }
}

/** sha256 hex of a blob. */
export function hashOf(blob: Uint8Array): string {
  return createHash("sha256").update(blob).digest("hex");
}

/** Encodes files into one canonical blob. */
export function encodeBundle(files: BundleFiles): Uint8Array {
  const names = Object.keys(files).sort();
  if (names.length === 0 || names.length > MAX_FILES) {
    throw new BadBundleError(`a bundle holds 1-${MAX_FILES} files, got ${names.length}.`);
  }
  const parts: Buffer[] = [MAGIC];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(names.length);
  parts.push(count);
  for (const name of names) {
    if (!FILE_NAME.test(name))
      throw new BadBundleError(`bundle file name '${name}' must match ${FILE_NAME}.`);
    const n = Buffer.from(name);
    const data = files[name]!;
    const head = Buffer.alloc(6);
    head.writeUInt16BE(n.length, 0);
    head.writeUInt32BE(data.byteLength, 2);
    parts.push(head, n, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }
  return Buffer.concat(parts);
}

/** Decodes a blob, refusing anything malformed (truncated, oversized counts, bad names, trailing bytes). */
export function decodeBundle(blob: Uint8Array): BundleFiles {
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length < MAGIC.length + 4 || !b.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new BadBundleError("not a Nimbus bundle.");
  }
  let at = MAGIC.length;
  const count = b.readUInt32BE(at);
  at += 4;
  if (count === 0 || count > MAX_FILES) throw new BadBundleError(`a bundle holds 1-${MAX_FILES} files.`);
  const files: BundleFiles = {};
  let previous = "";
  for (let i = 0; i < count; i++) {
    if (at + 6 > b.length) throw new BadBundleError("bundle truncated.");
    const nameLen = b.readUInt16BE(at);
    const dataLen = b.readUInt32BE(at + 2);
    at += 6;
    if (at + nameLen + dataLen > b.length) throw new BadBundleError("bundle truncated.");
    const name = b.subarray(at, at + nameLen).toString("utf8");
    at += nameLen;
    // Sorted and unique, as encodeBundle writes them: one blob per set of files.
    if (!FILE_NAME.test(name) || name <= previous)
      throw new BadBundleError(`bad file name in bundle: '${name}'.`);
    previous = name;
    files[name] = b.subarray(at, at + dataLen);
    at += dataLen;
  }
  if (at !== b.length) throw new BadBundleError("trailing bytes after the bundle.");
  return files;
}
