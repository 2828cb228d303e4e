/**
 * The executor contract: the same functions, deployed once per executor, must give the same
 * status, headers and bodies (text, JSON, binary, streamed), the same logs and the same
 * error codes. Each executor's test file is one call of {@link executorContract}; a case an
 * executor cannot support is skipped with its reason.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { bundle } from "../src/build/bundle.ts";
import type { ExecutorKind } from "../src/executors/types.ts";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

/** The functions of the contract, as source files (Web-standard TypeScript or JS). */
export const CONTRACT_FUNCTIONS: Record<string, string> = {
  text: `export default { fetch: () => new Response("hello, world", { headers: { "content-type": "text/plain; charset=utf-8", "x-custom": "yes" } }) };`,
  json: `export default { fetch: () => Response.json({ a: 1, list: [1, 2, 3], nested: { ok: true } }, { status: 201, headers: { "x-kind": "json" } }) };`,
  fn: `export default async (request: Request) => new Response("plain function " + request.method);`,
  echo: `export default {
    async fetch(request: Request) {
      const url = new URL(request.url);
      return Response.json({
        method: request.method,
        path: url.pathname,
        q: url.searchParams.getAll("q"),
        header: request.headers.get("x-test"),
        body: await request.text(),
      });
    },
  };`,
  binary: `export default {
    async fetch(request: Request) {
      if (request.method === "POST") {
        const bytes = new Uint8Array(await request.arrayBuffer());
        return new Response(bytes.reverse(), { headers: { "content-type": "application/octet-stream" } });
      }
      const out = new Uint8Array(256);
      for (let i = 0; i < 256; i++) out[i] = i;
      return new Response(out, { headers: { "content-type": "application/octet-stream" } });
    },
  };`,
  stream: `export default {
    fetch(request: Request) {
      const gap = Number(new URL(request.url).searchParams.get("gap") ?? 300);
      const enc = new TextEncoder();
      let i = 0;
      const body = new ReadableStream({
        async pull(controller) {
          if (i >= 3) return controller.close();
          if (i > 0) await new Promise((r) => setTimeout(r, gap));
          controller.enqueue(enc.encode("data: " + i++ + "\\n\\n"));
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  };`,
  transform: `export default {
    fetch() {
      const { readable, writable } = new TransformStream();
      const writer = writable.getWriter();
      const enc = new TextEncoder();
      (async () => {
        for (const word of ["one", "two", "three"]) {
          await writer.write(enc.encode(word + "\\n"));
          await new Promise((r) => setTimeout(r, 20));
        }
        await writer.close();
      })();
      return new Response(readable.pipeThrough(new TransformStream({ transform(chunk, c) { c.enqueue(chunk); } })), {
        headers: { "content-type": "text/plain" },
      });
    },
  };`,
  cookies: `export default {
    fetch() {
      const h = new Headers({ "content-type": "text/plain" });
      h.append("set-cookie", "a=1; Path=/");
      h.append("set-cookie", "b=2; Path=/");
      return new Response("cookies", { status: 202, headers: h });
    },
  };`,
  nobody: `export default { fetch: (r: Request) => new Response(null, { status: new URL(r.url).pathname === "/gone" ? 404 : 204 }) };`,
  lambda: `export const handler = async (event: any, context: any) => ({
    statusCode: 200,
    headers: { "content-type": "application/json", "x-lambda": "1" },
    cookies: ["c=3"],
    body: JSON.stringify({ path: event.rawPath, q: event.queryStringParameters, method: event.requestContext.http.method, body: event.body, fn: context.functionName }),
  });`,
  "lambda-bad": `export const handler = async () => ({ statusCode: 9000, body: "x" });`,
  logs: `export default {
    fetch() {
      console.log("hello", 42, { a: 1, b: "x" }, [1, 2]);
      console.warn("careful: %s is %d", "x", 5);
      console.error("something failed");
      return new Response("logged");
    },
  };`,
  throws: `export default {
    fetch() {
      console.log("about to throw");
      throw new Error("boom from the function");
    },
  };`,
  bad: `export default { fetch: () => "not a response" };`,
  env: `export default { fetch: (_r: Request, env: Record<string, string>) => new Response(env.GREETING ?? "missing") };`,
  slow: `export const config = { timeout: "1s" };
  export default {
    async fetch(request: Request) {
      if (new URL(request.url).pathname === "/hang") await new Promise(() => {});
      return new Response("fast");
    },
  };`,
  memory: `const hog: unknown[] = [];
  export const config = { memory: 128 };
  export default {
    fetch(request: Request) {
      if (new URL(request.url).pathname === "/bomb") for (;;) hog.push(new Array(1_000_000).fill(Math.random()));
      return new Response("fine");
    },
  };`,
  cpu: `export const config = { cpuMs: 50, timeout: "10s" };
  export default {
    fetch(request: Request) {
      const ms = Number(new URL(request.url).searchParams.get("ms") ?? 1);
      const until = Date.now() + ms;
      let x = 0;
      while (Date.now() < until) x += Math.sqrt(x + 1);
      return new Response("spun " + (x > 0));
    },
  };`,
  background: `export default {
    fetch(_r: Request, _env: unknown, ctx: { waitUntil(p: Promise<unknown>): void }) {
      ctx.waitUntil(new Promise((r) => setTimeout(r, 100)).then(() => console.log("background work done")));
      return new Response("early");
    },
  };`,
  web: `export default {
    async fetch() {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc")));
      const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("key"), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode("The quick brown fox jumps over the lazy dog")));
      const ok = await crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode("The quick brown fox jumps over the lazy dog"));
      const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      const rnd = crypto.getRandomValues(new Uint8Array(16));
      const ac = new AbortController();
      ac.abort(new Error("stop"));
      const u = new URL("../b/./c?x=1#h", "https://example.com/a/z");
      const sp = new URLSearchParams({ a: "1 2", b: "é" });
      let micro = false;
      queueMicrotask(() => { micro = true; });
      await new Promise((r) => setTimeout(r, 5));
      const clone = structuredClone({ d: new Date(0), m: new Map([[1, { x: [1] }]]) });
      return Response.json({
        sha256: hex(digest),
        hmac: hex(mac),
        verified: ok,
        uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
        random: rnd.length === 16,
        aborted: ac.signal.aborted && (ac.signal.reason as Error).message,
        url: u.href,
        search: sp.toString(),
        b64: btoa("hello") + " " + atob("aGVsbG8="),
        text: new TextDecoder().decode(new TextEncoder().encode("héllo €")),
        micro,
        clone: clone.d instanceof Date && clone.m.get(1).x[0] === 1,
        reqClone: await new Request("https://x.test/", { method: "POST", body: "b" }).clone().text(),
      });
    },
  };`,
  kept: `// Kept at load time, before any request: a platform that hands out a stand-in Request
  // must still be taken by these (the process runtime's lazy requests).
  const KeptRequest = Request;
  const keptFetch = fetch;
  export default {
    async fetch(request: Request) {
      const again = new Request(request.clone(), { headers: { "x-b": "2" } });
      const copy = new KeptRequest(request, { headers: { "x-k": "1", "x-a": request.headers.get("x-a") ?? "" } });
      let fetchErr = "";
      try {
        await keptFetch(new KeptRequest("ftp://nowhere.invalid/"));
      } catch (err) {
        fetchErr = (err as Error).name;
      }
      return Response.json({
        isRequest: request instanceof Request && request instanceof KeptRequest,
        tag: Object.prototype.toString.call(request),
        path: new URL(request.url).pathname,
        method: request.method,
        copy: [copy.method, copy.headers.get("x-k"), copy.headers.get("x-a"), await copy.text()],
        again: [again.method, again.headers.get("x-b"), await again.text()],
        fetchErr,
      });
    },
  };`,
  form: `export default {
    async fetch(request: Request) {
      const fd = await request.formData();
      const out: Record<string, unknown> = {};
      for (const [k, v] of fd) {
        out[k] = typeof v === "string" ? v : { name: v.name, type: v.type, size: v.size, text: await v.text() };
      }
      const reply = new FormData();
      reply.append("count", String([...fd.keys()].length));
      reply.append("echo", new Blob(["back"], { type: "text/x-echo" }), "echo.txt");
      const back = await new Response(reply).formData();
      out.reply = [back.get("count"), (back.get("echo") as File).name, await (back.get("echo") as File).text()];
      return Response.json(out);
    },
  };`,
  webstd: `export default {
    async fetch() {
      const input = new TextEncoder().encode("hello hello hello hello hello");
      const gz = new Blob([input]).stream().pipeThrough(new CompressionStream("gzip"));
      const roundTrip = await new Response(gz.pipeThrough(new DecompressionStream("gzip"))).text();
      const signal = AbortSignal.timeout(10);
      await new Promise((r) => signal.addEventListener("abort", r));
      const any = AbortSignal.any([new AbortController().signal, AbortSignal.abort("x")]);
      const blob = new Blob(["ab", new Uint8Array([99])], { type: "Text/Plain" });
      const file = new File(["f"], "f.txt", { lastModified: 7 });
      const chunks: string[] = [];
      await new ReadableStream({ start(c) { c.enqueue("a"); c.enqueue("b"); c.close(); } })
        .pipeThrough(new TransformStream({ transform: (x, c) => c.enqueue(String(x).toUpperCase()) }))
        .pipeTo(new WritableStream({ write: (x) => void chunks.push(x) }));
      const reader = new Blob([new Uint8Array([0x68, 0xc3])]).stream().pipeThrough(new TextDecoderStream()).getReader();
      let decoded = "";
      for (let r = await reader.read(); !r.done; r = await reader.read()) decoded += r.value;
      const u = new URL("foo://h/a/../b?x#y");
      u.pathname = "\t/c";
      let cloneError = "";
      try { structuredClone(new URL("https://x/")); } catch (e) { cloneError = (e as Error).name; }
      let headersError = "";
      try { new Headers({ a: "\u0100" }); } catch (e) { headersError = (e as Error).name; }
      const h = new Headers({ b: "2", a: "1" });
      let ev = 0;
      const et = new EventTarget();
      et.addEventListener("x", (e) => { ev = (e as CustomEvent).detail as number; });
      et.dispatchEvent(new CustomEvent("x", { detail: 5 }));
      return Response.json({
        roundTrip,
        timeout: (signal.reason as DOMException).name,
        any: any.reason,
        blob: [blob.type, blob.size, await blob.slice(1).text()],
        file: [file.name, file.lastModified, Object.prototype.toString.call(file)],
        chunks,
        decoded,
        latin1: new TextDecoder("latin1").decode(new Uint8Array([0xe9, 0x80])),
        utf16: new TextDecoder("utf-16be").decode(new Uint8Array([0, 0x61, 0xd8, 0x3d, 0xde, 0])),
        url: u.href,
        cloneError,
        headersError,
        headers: [...h].join(";"),
        headersIter: Object.prototype.toString.call(h.entries()),
        event: ev,
      });
    },
  };`,
  subtle: `const enc = new TextEncoder();
  const hex = (b: ArrayBuffer | Uint8Array) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
  const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
  const S = crypto.subtle;
  async function errName(p: Promise<unknown>) { try { await p; return "none"; } catch (e) { return (e as Error).name; } }
  export async function run() {
    const out: Record<string, unknown> = {};
    const msg = enc.encode("The quick brown fox jumps over the lazy dog");
    for (const h of ["SHA-1", "SHA-256", "SHA-384", "SHA-512"]) out[h] = hex(await S.digest(h, msg));
    // HMAC
    const hk = await S.importKey("raw", bytes(32, 1), { name: "HMAC", hash: "SHA-256" }, true, ["sign", "verify"]);
    out.hmac = hex(await S.sign("HMAC", hk, msg));
    out.hmacVerify = await S.verify("HMAC", hk, await S.sign("HMAC", hk, msg), msg);
    out.hmacJwk = await S.exportKey("jwk", hk);
    out.hmacAlg = hk.algorithm;
    out.tag = Object.prototype.toString.call(hk);
    out.isKey = hk instanceof CryptoKey;
    // AES
    const gk = await S.importKey("raw", bytes(16, 2), "AES-GCM", true, ["encrypt", "decrypt", "wrapKey", "unwrapKey"]);
    const gct = await S.encrypt({ name: "AES-GCM", iv: bytes(12, 3), additionalData: bytes(5, 4) }, gk, msg);
    out.gcm = hex(gct);
    out.gcmBack = new TextDecoder().decode(await S.decrypt({ name: "AES-GCM", iv: bytes(12, 3), additionalData: bytes(5, 4) }, gk, gct));
    out.gcmTampered = await errName(S.decrypt({ name: "AES-GCM", iv: bytes(12, 3) }, gk, gct));
    const ck = await S.importKey("raw", bytes(32, 5), { name: "AES-CBC" }, false, ["encrypt", "decrypt"]);
    const cct = await S.encrypt({ name: "AES-CBC", iv: bytes(16, 6) }, ck, msg);
    out.cbc = hex(cct);
    out.cbcBack = new TextDecoder().decode(await S.decrypt({ name: "AES-CBC", iv: bytes(16, 6) }, ck, cct));
    const tk = await S.importKey("raw", bytes(16, 7), "AES-CTR", false, ["encrypt", "decrypt"]);
    out.ctr = hex(await S.encrypt({ name: "AES-CTR", counter: bytes(16, 8), length: 64 }, tk, msg));
    out.notExtractable = await errName(S.exportKey("raw", ck));
    out.wrongUsage = await errName(S.sign("HMAC", ck, msg));
    // wrapKey / unwrapKey
    const wrapped = await S.wrapKey("raw", hk, gk, { name: "AES-GCM", iv: bytes(12, 9) });
    out.wrapped = hex(wrapped);
    const hk2 = await S.unwrapKey("raw", wrapped, gk, { name: "AES-GCM", iv: bytes(12, 9) }, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    out.unwrappedSame = hex(await S.sign("HMAC", hk2, msg)) === out.hmac;
    // PBKDF2, HKDF
    const pw = await S.importKey("raw", enc.encode("password"), "PBKDF2", false, ["deriveBits", "deriveKey"]);
    out.pbkdf2 = hex(await S.deriveBits({ name: "PBKDF2", salt: enc.encode("salt"), iterations: 1000, hash: "SHA-256" }, pw, 256));
    const dk = await S.deriveKey({ name: "PBKDF2", salt: enc.encode("salt"), iterations: 1000, hash: "SHA-256" }, pw, { name: "AES-GCM", length: 256 }, true, ["encrypt"]);
    out.pbkdf2Key = hex(await S.exportKey("raw", dk));
    const ikm = await S.importKey("raw", bytes(22, 10), "HKDF", false, ["deriveBits"]);
    out.hkdf = hex(await S.deriveBits({ name: "HKDF", hash: "SHA-256", salt: bytes(13, 11), info: bytes(10, 12) }, ikm, 336));
    // ECDSA, ECDH
    for (const curve of ["P-256", "P-384"]) {
      const hash = curve === "P-256" ? "SHA-256" : "SHA-384";
      const pair = (await S.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])) as CryptoKeyPair;
      const sig = await S.sign({ name: "ECDSA", hash }, pair.privateKey, msg);
      const spki = await S.exportKey("spki", pair.publicKey);
      const pub = await S.importKey("spki", spki, { name: "ECDSA", namedCurve: curve }, true, ["verify"]);
      const jwk = (await S.exportKey("jwk", pair.privateKey)) as JsonWebKey;
      const priv = await S.importKey("jwk", jwk, { name: "ECDSA", namedCurve: curve }, false, ["sign"]);
      out["ecdsa " + curve] = [
        await S.verify({ name: "ECDSA", hash }, pub, sig, msg),
        await S.verify({ name: "ECDSA", hash }, pub, await S.sign({ name: "ECDSA", hash }, priv, msg), msg),
        await S.verify({ name: "ECDSA", hash }, pub, sig, enc.encode("other")),
        jwk.crv, pair.publicKey.type, pair.privateKey.type, pair.publicKey.algorithm,
      ];
      const a = (await S.generateKey({ name: "ECDH", namedCurve: curve }, false, ["deriveBits", "deriveKey"])) as CryptoKeyPair;
      const b = (await S.generateKey({ name: "ECDH", namedCurve: curve }, false, ["deriveBits"])) as CryptoKeyPair;
      const ab = await S.deriveBits({ name: "ECDH", public: b.publicKey }, a.privateKey, null);
      const ba = await S.deriveBits({ name: "ECDH", public: a.publicKey }, b.privateKey, null);
      const shared = await S.deriveKey({ name: "ECDH", public: b.publicKey }, a.privateKey, { name: "AES-GCM", length: 128 }, false, ["encrypt"]);
      out["ecdh " + curve] = [hex(ab) === hex(ba), ab.byteLength, shared.algorithm];
    }
    // Ed25519
    const ed = (await S.generateKey("Ed25519", true, ["sign", "verify"])) as CryptoKeyPair;
    const edSig = await S.sign("Ed25519", ed.privateKey, msg);
    const edPriv = await S.importKey("pkcs8", await S.exportKey("pkcs8", ed.privateKey), "Ed25519", false, ["sign"]);
    out.ed25519 = [
      await S.verify("Ed25519", ed.publicKey, edSig, msg),
      hex(await S.sign("Ed25519", edPriv, msg)) === hex(edSig),
      (await S.exportKey("raw", ed.publicKey)).byteLength,
    ];
    // RSA
    const rsaAlg = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
    const rsa = (await S.generateKey(rsaAlg, true, ["sign", "verify"])) as CryptoKeyPair;
    const rsaSig = await S.sign("RSASSA-PKCS1-v1_5", rsa.privateKey, msg);
    const rsaPriv = await S.importKey("pkcs8", await S.exportKey("pkcs8", rsa.privateKey), { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
    const rsaJwk = (await S.exportKey("jwk", rsa.publicKey)) as JsonWebKey;
    const pss = await S.importKey("jwk", { ...rsaJwk, alg: "PS256" }, { name: "RSA-PSS", hash: "SHA-256" }, false, ["verify"]);
    const pssPriv = await S.importKey("pkcs8", await S.exportKey("pkcs8", rsa.privateKey), { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]);
    const pssSig = await S.sign({ name: "RSA-PSS", saltLength: 32 }, pssPriv, msg);
    const oaep = (await S.generateKey({ name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, false, ["encrypt", "decrypt"])) as CryptoKeyPair;
    const oct = await S.encrypt({ name: "RSA-OAEP", label: bytes(4, 13) }, oaep.publicKey, msg);
    out.rsa = [
      await S.verify("RSASSA-PKCS1-v1_5", rsa.publicKey, rsaSig, msg),
      hex(await S.sign("RSASSA-PKCS1-v1_5", rsaPriv, msg)) === hex(rsaSig),
      rsaJwk.kty, rsaJwk.e, rsa.publicKey.algorithm.name, (rsa.publicKey.algorithm as RsaHashedKeyAlgorithm).modulusLength,
      Array.from((rsa.publicKey.algorithm as RsaHashedKeyAlgorithm).publicExponent),
      await S.verify({ name: "RSA-PSS", saltLength: 32 }, pss, pssSig, msg),
      new TextDecoder().decode(await S.decrypt({ name: "RSA-OAEP", label: bytes(4, 13) }, oaep.privateKey, oct)),
    ];
    out.badKey = await errName(S.sign("HMAC", { type: "secret" } as unknown as CryptoKey, msg));
    out.badJwk = await errName(S.importKey("jwk", { kty: "EC", crv: "P-256", x: "AAAA", y: "AAAA" }, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]));
    return out;
  }
  export default { async fetch() { return Response.json(await run()); } };`,
};

/** Per-executor differences the contract accepts, each with its reason. */
export interface ContractOptions {
  /** Cases this executor cannot support: case name → reason (the case is skipped). */
  skip?: Record<string, string>;
  /** Extra server arguments. */
  args?: string[];
  env?: Record<string, string>;
}

interface Res {
  status: number;
  headers: Headers;
  body: Buffer;
  text: string;
  json(): any;
}

async function call(s: TestServer, path: string, init: RequestInit = {}): Promise<Res> {
  const r = await fetch(`${s.url}${path}`, init);
  const body = Buffer.from(await r.arrayBuffer());
  return {
    status: r.status,
    headers: r.headers,
    body,
    text: body.toString("utf8"),
    json: () => JSON.parse(body.toString("utf8")),
  };
}

async function logsOf(
  s: TestServer,
  name: string,
  invocationId: string,
  atLeast = 1,
): Promise<{ level: string; msg: string }[]> {
  for (let i = 0; i < 50; i++) {
    const r = await s.api("GET", `/api/v1/functions/${name}/logs?invocation=${invocationId}`);
    const lines = (r.body.lines ?? []) as { level: string; msg: string }[];
    if (lines.length >= atLeast) return lines;
    await sleep(100);
  }
  return [];
}

async function recordOf(s: TestServer, name: string, invocationId: string): Promise<any> {
  for (let i = 0; i < 50; i++) {
    const r = await s.api("GET", `/api/v1/functions/${name}/invocations?limit=100`);
    const rec = (r.body.invocations ?? []).find((x: { id: string }) => x.id === invocationId);
    if (rec) return rec;
    await sleep(100);
  }
  return undefined;
}

/** Runs the whole contract against one executor. */
export function executorContract(kind: ExecutorKind, opts: ContractOptions = {}): void {
  describe(`executor contract: ${kind}`, () => {
    let s: TestServer;
    const dir = mkdtempSync(join(tmpdir(), `nimbus-contract-${kind}-`));
    const deployed = new Set<string>();

    before(async () => {
      s = await startTestServer({ args: opts.args, env: opts.env });
    });
    after(async () => {
      await s?.stop();
      if (s) cleanup(s.dataDir);
      cleanup(dir);
    });

    /** Deploys a contract function (once) as `<case>` with this executor. */
    async function deploy(name: string, config: Record<string, unknown> = {}): Promise<void> {
      if (deployed.has(name)) return;
      const file = join(dir, `${name}.ts`);
      writeFileSync(file, CONTRACT_FUNCTIONS[name]!);
      const b = await bundle(file, { executor: kind });
      const r = await s.api("POST", `/api/v1/functions/${name}/versions`, {
        code: b.code,
        sourceMap: b.sourceMap,
        config: { executor: kind, ...config },
      });
      assert.equal(r.status, 200, `deploying ${name} on ${kind}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.version.executor, kind);
      deployed.add(name);
    }

    const skipped = (name: string): string | undefined => opts.skip?.[name];
    const test = (name: string, title: string, fn: () => Promise<void>) =>
      it(`${name}: ${title}`, { skip: skipped(name) }, fn);

    test("text", "text body, status and custom headers", async () => {
      await deploy("text");
      const r = await call(s, "/fn/text");
      assert.equal(r.status, 200);
      assert.equal(r.text, "hello, world");
      assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.equal(r.headers.get("x-custom"), "yes");
      assert.ok(r.headers.get("x-nimbus-invocation-id"));
    });

    test("json", "Response.json with a status", async () => {
      await deploy("json");
      const r = await call(s, "/fn/json");
      assert.equal(r.status, 201);
      assert.equal(r.headers.get("content-type"), "application/json");
      assert.equal(r.headers.get("x-kind"), "json");
      assert.deepEqual(r.json(), { a: 1, list: [1, 2, 3], nested: { ok: true } });
    });

    test("fn", "a plain function handler", async () => {
      await deploy("fn");
      const r = await call(s, "/fn/fn", { method: "PUT", body: "x" });
      assert.equal(r.status, 200);
      assert.equal(r.text, "plain function PUT");
    });

    test("echo", "the request reaches the function intact", async () => {
      await deploy("echo");
      const r = await call(s, "/fn/echo/a/b?q=1&q=two%20words", {
        method: "POST",
        headers: { "x-test": "header value", "content-type": "text/plain" },
        body: "héllo body",
      });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json(), {
        method: "POST",
        path: "/a/b",
        q: ["1", "two words"],
        header: "header value",
        body: "héllo body",
      });
    });

    test("binary", "binary bodies both ways, byte for byte", async () => {
      await deploy("binary");
      const r = await call(s, "/fn/binary");
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-type"), "application/octet-stream");
      assert.deepEqual(
        [...r.body],
        Array.from({ length: 256 }, (_, i) => i),
      );
      const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
      const back = await call(s, "/fn/binary", {
        method: "POST",
        body: payload,
        headers: { "content-type": "application/octet-stream" },
      });
      assert.equal(back.status, 200);
      assert.ok(back.body.equals(Buffer.from(payload).reverse()), "the reversed bytes come back");
    });

    test("stream", "a ReadableStream body reaches the client chunk by chunk", async () => {
      await deploy("stream");
      await call(s, "/fn/stream?gap=1"); // warm: the timing below is about streaming, not start-up
      const t0 = Date.now();
      const r = await fetch(`${s.url}/fn/stream?gap=400`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-type"), "text/event-stream");
      const reader = r.body!.getReader();
      const arrivals: { t: number; text: string }[] = [];
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arrivals.push({ t: Date.now() - t0, text: dec.decode(value) });
      }
      const all = arrivals.map((a) => a.text).join("");
      assert.equal(all, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
      // The first event arrives long before the last one is produced (2 × 400 ms later).
      assert.ok(arrivals.length >= 2, `expected several chunks, got ${arrivals.length}`);
      assert.ok(
        arrivals[0]!.t + 500 < arrivals.at(-1)!.t,
        `first chunk at ${arrivals[0]!.t} ms, last at ${arrivals.at(-1)!.t} ms`,
      );
      const id = r.headers.get("x-nimbus-invocation-id")!;
      const rec = await recordOf(s, "stream", id);
      assert.ok(rec, "the invocation is recorded");
      assert.ok(
        rec.firstByteMs !== null && rec.firstByteMs < rec.durationMs - 500,
        `first byte ${rec.firstByteMs} ms, duration ${rec.durationMs} ms`,
      );
    });

    test("transform", "TransformStream / pipeThrough bodies", async () => {
      await deploy("transform");
      const r = await call(s, "/fn/transform");
      assert.equal(r.status, 200);
      assert.equal(r.text, "one\ntwo\nthree\n");
    });

    test("cookies", "repeated set-cookie headers stay separate", async () => {
      await deploy("cookies");
      const r = await fetch(`${s.url}/fn/cookies`);
      assert.equal(r.status, 202);
      assert.deepEqual(r.headers.getSetCookie(), ["a=1; Path=/", "b=2; Path=/"]);
      assert.equal(await r.text(), "cookies");
    });

    test("nobody", "null-body statuses", async () => {
      await deploy("nobody");
      const a = await call(s, "/fn/nobody");
      assert.equal(a.status, 204);
      assert.equal(a.body.length, 0);
      const b = await call(s, "/fn/nobody/gone");
      assert.equal(b.status, 404);
      assert.equal(b.body.length, 0);
    });

    test("lambda", "an AWS Lambda handler (HTTP API v2 event, proxy result)", async () => {
      await deploy("lambda");
      const r = await fetch(`${s.url}/fn/lambda/p/q?x=1`, {
        method: "POST",
        body: '{"in":1}',
        headers: { "content-type": "application/json" },
      });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("x-lambda"), "1");
      assert.deepEqual(r.headers.getSetCookie(), ["c=3"]);
      assert.deepEqual(await r.json(), {
        path: "/p/q",
        q: { x: "1" },
        method: "POST",
        body: '{"in":1}',
        fn: "lambda",
      });
    });

    test("lambda-bad", "an invalid Lambda result is NIMBUS_BAD_RESPONSE", async () => {
      await deploy("lambda-bad");
      const r = await call(s, "/fn/lambda-bad");
      assert.equal(r.status, 502);
      assert.equal(r.json().error.code, "NIMBUS_BAD_RESPONSE");
    });

    test("logs", "console output is captured per invocation, formatted like util.format", async () => {
      await deploy("logs");
      const r = await call(s, "/fn/logs");
      assert.equal(r.status, 200);
      const id = r.headers.get("x-nimbus-invocation-id")!;
      const lines = await logsOf(s, "logs", id, 3);
      assert.deepEqual(
        lines.map((l) => [l.level, l.msg]),
        [
          ["info", "hello 42 { a: 1, b: 'x' } [ 1, 2 ]"],
          ["warn", "careful: x is 5"],
          ["error", "something failed"],
        ],
      );
    });

    test("throws", "a throwing handler is NIMBUS_FUNCTION_ERROR, with its stack in the logs", async () => {
      await deploy("throws");
      const r = await call(s, "/fn/throws");
      assert.equal(r.status, 500);
      const body = r.json();
      assert.equal(body.error.code, "NIMBUS_FUNCTION_ERROR");
      assert.doesNotMatch(body.error.message, /boom/, "the caller does not see the function's internals");
      const id = r.headers.get("x-nimbus-invocation-id") ?? body.error.details?.invocationId;
      const lines = await logsOf(s, "throws", id, 2);
      assert.equal(lines[0]?.msg, "about to throw");
      assert.ok(
        lines.some(
          (l) => l.level === "error" && /Invocation failed: Error: boom from the function/.test(l.msg),
        ),
        JSON.stringify(lines),
      );
      const failure = lines.find((l) => /Invocation failed/.test(l.msg))!;
      assert.match(
        failure.msg,
        /throws\.ts:4:\d+/,
        `the stack is source-mapped to the function's own file: ${failure.msg}`,
      );
    });

    test("bad", "a handler returning a non-Response is NIMBUS_BAD_RESPONSE", async () => {
      await deploy("bad");
      const r = await call(s, "/fn/bad");
      assert.equal(r.status, 502);
      assert.equal(r.json().error.code, "NIMBUS_BAD_RESPONSE");
    });

    test("env", "the function's environment reaches the handler", async () => {
      await deploy("env", { env: { GREETING: "hi from env" } });
      const r = await call(s, "/fn/env");
      assert.equal(r.text, "hi from env");
    });

    test(
      "slow",
      "past its timeout a function is stopped with NIMBUS_TIMEOUT, then serves again",
      async () => {
        await deploy("slow");
        const r = await call(s, "/fn/slow/hang");
        assert.equal(r.status, 504);
        assert.equal(r.json().error.code, "NIMBUS_TIMEOUT");
        const again = await call(s, "/fn/slow/ok");
        assert.equal(again.status, 200);
        assert.equal(again.text, "fast");
      },
    );

    test(
      "memory",
      "a memory bomb is stopped with NIMBUS_MEMORY_LIMIT, then the function serves again",
      async () => {
        await deploy("memory");
        const r = await call(s, "/fn/memory/bomb");
        assert.equal(r.status, 502);
        const body = r.json();
        assert.equal(body.error.code, "NIMBUS_MEMORY_LIMIT");
        assert.match(body.error.message, /memory limit of 128 MB/);
        const again = await call(s, "/fn/memory/ok");
        assert.equal(again.status, 200);
        assert.equal(again.text, "fine");
      },
    );

    test(
      "cpu",
      "past cpuMs an invocation is stopped with NIMBUS_CPU_LIMIT; CPU ms are recorded",
      async () => {
        await deploy("cpu");
        const ok = await call(s, "/fn/cpu?ms=20");
        assert.equal(ok.status, 200);
        const rec = await recordOf(s, "cpu", ok.headers.get("x-nimbus-invocation-id")!);
        assert.ok(rec.cpuMs >= 10 && rec.cpuMs < 200, `cpuMs ${rec.cpuMs}`);
        const r = await call(s, "/fn/cpu?ms=3000");
        assert.equal(r.status, 504);
        assert.equal(r.json().error.code, "NIMBUS_CPU_LIMIT");
        const again = await call(s, "/fn/cpu?ms=1");
        assert.equal(again.status, 200);
      },
    );

    test(
      "background",
      "ctx.waitUntil work finishes after the response and logs to the invocation",
      async () => {
        await deploy("background");
        const r = await call(s, "/fn/background");
        assert.equal(r.text, "early");
        const id = r.headers.get("x-nimbus-invocation-id")!;
        const lines = await logsOf(s, "background", id, 1);
        assert.deepEqual(
          lines.map((l) => l.msg),
          ["background work done"],
        );
      },
    );

    test(
      "kept",
      "the Request given to fetch goes into a Request constructor kept at load time, and into new Request(request)",
      async () => {
        await deploy("kept");
        const r = await call(s, "/fn/kept/p?q=1", { method: "POST", body: "hi", headers: { "x-a": "1" } });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json(), {
          isRequest: true,
          tag: "[object Request]",
          path: "/p",
          method: "POST",
          copy: ["POST", "1", "1", "hi"],
          again: ["POST", "2", "hi"],
          fetchErr: "TypeError",
        });
      },
    );

    test(
      "form",
      "request.formData() for a multipart body with a file; FormData bodies round trip",
      async () => {
        await deploy("form");
        const fd = new FormData();
        fd.append("title", "hé llo");
        fd.append("upload", new Blob(["file body"], { type: "text/plain" }), "a.txt");
        const r = await call(s, "/fn/form", { method: "POST", body: fd });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json(), {
          title: "hé llo",
          upload: { name: "a.txt", type: "text/plain", size: 9, text: "file body" },
          reply: ["2", "echo.txt", "back"],
        });
        const url = await call(s, "/fn/form", {
          method: "POST",
          body: "a=1&b=x+y",
          headers: { "content-type": "application/x-www-form-urlencoded" },
        });
        assert.deepEqual(url.json(), { a: "1", b: "x y", reply: ["2", "echo.txt", "back"] });
      },
    );

    test(
      "webstd",
      "Web APIs: compression streams, AbortSignal.timeout/any, Blob/File, streams, text streams, legacy encodings, URL setters, DataCloneError, Headers, CustomEvent",
      async () => {
        await deploy("webstd");
        const r = await call(s, "/fn/webstd");
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json(), {
          roundTrip: "hello hello hello hello hello",
          timeout: "TimeoutError",
          any: "x",
          blob: ["text/plain", 3, "bc"],
          file: ["f.txt", 7, "[object File]"],
          chunks: ["A", "B"],
          decoded: "h\uFFFD",
          latin1: "é€",
          utf16: "a😀",
          url: "foo://h/c?x#y",
          cloneError: "DataCloneError",
          headersError: "TypeError",
          headers: "a,1;b,2",
          headersIter: "[object Headers Iterator]",
          event: 5,
        });
      },
    );

    test(
      "subtle",
      "Web Crypto: digest, HMAC, AES, wrap, PBKDF2, HKDF, ECDSA/ECDH, Ed25519, RSA as Node gives them",
      async () => {
        await deploy("subtle");
        const r = await call(s, "/fn/subtle");
        assert.equal(r.status, 200, r.text);
        // The same code run by Node's own Web Crypto in this process gives the expected answers.
        const local = (await import(pathToFileURL(join(dir, "subtle.ts")).href)) as {
          run(): Promise<unknown>;
        };
        const expected = JSON.parse(JSON.stringify(await local.run()));
        assert.deepEqual(r.json(), expected);
        const got = r.json() as Record<string, unknown>;
        assert.equal(got.gcmBack, "The quick brown fox jumps over the lazy dog");
        assert.equal(got.gcmTampered, "OperationError");
        assert.equal(got.notExtractable, "InvalidAccessError");
        assert.equal(got.unwrappedSame, true);
        assert.deepEqual((got["ecdsa P-256"] as unknown[]).slice(0, 3), [true, true, false]);
        assert.deepEqual((got["ecdh P-384"] as unknown[]).slice(0, 2), [true, 48]);
        assert.deepEqual(got.ed25519, [true, true, 32]);
        assert.equal(got.badKey, "TypeError");
      },
    );

    test("web", "Web APIs: crypto (digest, HMAC, random), URL, base64, encoding, timers, clone", async () => {
      await deploy("web");
      const r = await call(s, "/fn/web");
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json(), {
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        hmac: "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
        verified: true,
        uuid: true,
        random: true,
        aborted: "stop",
        url: "https://example.com/b/c?x=1#h",
        search: "a=1+2&b=%C3%A9",
        b64: "aGVsbG8= hello",
        text: "héllo €",
        micro: true,
        clone: true,
        reqClone: "b",
      });
    });
  });
}
