/**
 * Builds, once per platform process, the two programs of the isolate runtime with esbuild:
 * the in-isolate runtime (src/runtime/isolate/prelude) as one classic script, which the
 * isolate host bakes into a V8 startup snapshot so every isolate starts with the Web globals
 * in its heap; and the isolate host itself (src/runtime/isolate/host.ts) as one plain ES
 * module, so the host process does not load Node's TypeScript stripper (~17 MB, and start-up
 * time) for its own code.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

const RUNTIME = resolve(dirname(fileURLToPath(import.meta.url)), "../../runtime/isolate");
const ENTRY = resolve(RUNTIME, "prelude/index.ts");

let host: string | undefined;

/**
 * fflate as a classic script defining `__nimbus_fflate`: the isolate host hands it to an
 * isolate when it first uses CompressionStream/DecompressionStream (not in the snapshot).
 */
function fflateSource(): string {
  return buildSync({
    stdin: {
      contents: 'export { Deflate, Inflate, Gzip, Gunzip, Zlib, Unzlib } from "fflate";',
      resolveDir: RUNTIME,
    },
    bundle: true,
    format: "iife",
    globalName: "__nimbus_fflate",
    platform: "neutral",
    mainFields: ["module", "main"],
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    logLevel: "silent",
  }).outputFiles[0]!.text;
}

/** The bundled isolate host program (an ES module; cached). */
export function hostSource(): string {
  host ??= buildSync({
    define: { __NIMBUS_FFLATE__: JSON.stringify(fflateSource()) },
    entryPoints: [resolve(RUNTIME, "host.ts")],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node24",
    write: false,
    legalComments: "none",
    logLevel: "silent",
  }).outputFiles[0]!.text;
  return host;
}

let cached: Promise<string> | undefined;

/**
 * The bundled prelude source (cached). Built with `buildSync` like the host program: esbuild's
 * asynchronous API would keep a second esbuild service process (~14 MB RSS) alive beside the
 * platform for the rest of its life, for one build.
 */
export function preludeSource(): Promise<string> {
  cached ??= Promise.resolve().then(() => preludeText());
  return cached;
}

function preludeText(): string {
  return buildSync({
    entryPoints: [ENTRY],
    bundle: true,
    format: "iife",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    conditions: ["import"],
    write: false,
    minifySyntax: true,
    minifyWhitespace: true,
    legalComments: "none",
    logLevel: "silent",
  }).outputFiles[0]!.text;
}
