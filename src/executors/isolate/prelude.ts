/**
 * Builds the in-isolate runtime (src/runtime/isolate/prelude) into one classic script with
 * esbuild, once per platform process. The isolate host bakes it into a V8 startup snapshot,
 * so every isolate starts with the Web globals already in its heap.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ENTRY = resolve(dirname(fileURLToPath(import.meta.url)), "../../runtime/isolate/prelude/index.ts");

let cached: Promise<string> | undefined;

/** The bundled prelude source (cached). */
export function preludeSource(): Promise<string> {
  cached ??= build({
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
  }).then((r) => r.outputFiles[0]!.text);
  return cached;
}
