/**
 * Bundles by content hash in a NATS object store (the shared nats-server at 127.0.0.1:4222,
 * a random bucket deleted after), with one cache directory per simulated node.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sharedNatsUnavailable } from "../../queue/jetstream/nats-cluster.ts";
import { BadBundleError, decodeBundle, encodeBundle } from "./archive.ts";
import { BundleCache } from "./cache.ts";
import type { NatsBlobBackend } from "./nats.ts";
import { openTestBackend } from "./test-backend.ts";

const skip = await sharedNatsUnavailable();

const code = (s: string) => ({ "index.mjs": Buffer.from(s), "index.mjs.map": Buffer.from(`{"map":"${s}"}`) });

describe("bundles in a NATS object store with a cache per node", { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-bundles-"));
  let backend: NatsBlobBackend;
  let dispose: () => Promise<void>;
  let n = 0;
  const node = (opts: { maxBytes?: number; dir?: string } = {}) =>
    new BundleCache(backend, { dir: opts.dir ?? join(dir, `node${++n}`), maxBytes: opts.maxBytes });
  before(async () => {
    ({ backend, dispose } = await openTestBackend());
  });
  after(async () => {
    await dispose?.();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a bundle put on one node is served on another from its content hash, downloaded once", async () => {
    const a = node();
    const b = node();
    const hash = await a.put(code("export default 1"));
    assert.match(hash, /^[0-9a-f]{64}$/);
    const [d1, d2, d3] = await Promise.all([b.dir(hash), b.dir(hash), b.dir(hash)]);
    assert.equal(d1, d2);
    assert.equal(d2, d3);
    assert.equal(readFileSync(join(d1, "index.mjs"), "utf8"), "export default 1");
    assert.equal(readFileSync(join(d1, "index.mjs.map"), "utf8"), '{"map":"export default 1"}');
    assert.equal(b.downloads, 1, "three concurrent asks, one download");
    await b.dir(hash);
    assert.equal(b.downloads, 1, "then served from the node's disk");
    assert.equal(a.downloads, 0, "the node that put it never downloads it");
  });

  test("identical code gives the same hash on every node, whatever the file order", async () => {
    const a = node();
    const b = node();
    const files = code("same");
    const reversed = Object.fromEntries(Object.entries(files).reverse());
    assert.equal(await a.put(files), await b.put(reversed));
    assert.notEqual(await a.put(code("other")), await a.put(files));
  });

  test("a restarted node keeps its cache; a cache past its size drops the least recently used", async () => {
    const where = join(dir, "restart");
    const first = node({ dir: where });
    const h1 = await node().put(code("one".repeat(100)));
    const h2 = await node().put(code("two".repeat(100)));
    await first.dir(h1);
    const again = node({ dir: where });
    await again.dir(h1);
    assert.equal(again.downloads, 0, "found on disk after a restart");
    const small = node({ maxBytes: 700 });
    await small.dir(h1);
    await small.dir(h2);
    assert.ok(small.bytes <= 700);
    await small.dir(h2);
    assert.equal(small.downloads, 2);
    await small.dir(h1);
    assert.equal(small.downloads, 3, "h1 was evicted and comes back from shared storage");
  });

  test("an unknown hash is a clear error", async () => {
    await assert.rejects(node().dir("0".repeat(64)), /not in shared storage/);
    await assert.rejects(node().dir("../../etc"), BadBundleError);
  });
});

test("bundle encoding: canonical, and refuses truncation, trailing bytes and bad names", () => {
  const blob = encodeBundle(code("x"));
  assert.deepEqual(Object.keys(decodeBundle(blob)), ["index.mjs", "index.mjs.map"]);
  assert.throws(() => decodeBundle(blob.subarray(0, blob.length - 1)), BadBundleError);
  assert.throws(() => decodeBundle(Buffer.concat([blob, Buffer.from("x")])), BadBundleError);
  assert.throws(() => encodeBundle({ "../x": Buffer.from("") }), BadBundleError);
  assert.throws(() => encodeBundle({}), BadBundleError);
});
