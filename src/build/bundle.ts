/**
 * Bundling a function with esbuild: TypeScript, npm imports from the surrounding
 * node_modules, one ES module plus its source map. Runs on the deploying machine (CLI).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { build, type Message } from "esbuild";
import { NimbusError } from "../errors.ts";
import type { ExecutorKind } from "../executors/types.ts";
import { ASYNC_HOOKS_FILE, NODE_GLOBALS, nodeCompatPlugin } from "./node-compat.ts";

/** One function to deploy. */
export interface FunctionSource {
  name: string;
  /** Entry file, absolute. */
  entry: string;
  /** Config from nimbus.json (validated by the server). */
  config: Record<string, unknown>;
}

/** A bundle ready to upload. */
export interface Bundle {
  code: string;
  sourceMap: string;
  ms: number;
}

/** Derives a function name from a file name: `hello-world.ts` → `hello-world`. */
export function nameFromFile(file: string): string {
  const base = file
    .split("/")
    .pop()!
    .replace(/\.(m|c)?(t|j)sx?$/, "");
  return base === "index" ? dirname(file).split("/").pop()!.toLowerCase() : base.toLowerCase();
}

/**
 * Resolves what a path deploys: a file (one function) or a directory with `nimbus.json`
 * (`{ "functions": { "<name>": { "entry": "src/a.ts", ...config } } }` or a single
 * `{ "name", "entry", ...config }`).
 */
export function resolveSources(path: string): FunctionSource[] {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new NimbusError("NIMBUS_BAD_REQUEST", `${path}: no such file or directory.`);
  if (statSync(abs).isFile()) {
    const manifest = join(dirname(abs), "nimbus.json");
    const name = nameFromFile(abs);
    let config: Record<string, unknown> = {};
    if (existsSync(manifest)) {
      const m = readManifest(manifest);
      const entry = m.functions?.[name];
      if (entry) config = withoutEntry(entry);
    }
    return [{ name, entry: abs, config }];
  }
  const manifest = join(abs, "nimbus.json");
  if (!existsSync(manifest)) {
    throw new NimbusError(
      "NIMBUS_BAD_REQUEST",
      `${path} is a directory without a nimbus.json. Deploy a file (nimbus deploy ${path}/index.ts) or add a nimbus.json: { "functions": { "<name>": { "entry": "index.ts" } } }.`,
    );
  }
  const m = readManifest(manifest);
  const out: FunctionSource[] = [];
  const fns: Record<string, Record<string, unknown>> = m.functions ??
  (m.name ? { [String(m.name)]: m as Record<string, unknown> } : {});
  for (const [name, def] of Object.entries(fns)) {
    if (typeof def.entry !== "string") {
      throw new NimbusError(
        "NIMBUS_BAD_CONFIG",
        `${manifest}: functions.${name}.entry must be the path of the entry file.`,
      );
    }
    const entry = resolve(abs, def.entry);
    if (!existsSync(entry))
      throw new NimbusError(
        "NIMBUS_BAD_CONFIG",
        `${manifest}: functions.${name}.entry: ${def.entry} does not exist.`,
      );
    out.push({ name, entry, config: withoutEntry(def) });
  }
  if (out.length === 0) throw new NimbusError("NIMBUS_BAD_CONFIG", `${manifest} declares no functions.`);
  return out;
}

function readManifest(file: string): { functions?: Record<string, Record<string, unknown>>; name?: unknown } {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new NimbusError("NIMBUS_BAD_CONFIG", `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

function withoutEntry(def: Record<string, unknown>): Record<string, unknown> {
  const { entry: _e, name: _n, ...config } = def;
  return config;
}

function formatMessage(m: Message): string {
  const loc = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : "";
  const text = m.location?.lineText ? `\n    ${m.location.lineText}` : "";
  return `${loc}${m.text}${text}`;
}

/** Options of {@link bundle}. */
export interface BundleOptions {
  /**
   * The executor the bundle is for. `isolate` resolves packages' Workers/browser builds
   * (export conditions `workerd`, `worker`, `browser`) and leaves Node built-in imports in
   * place, so that the deploy check names them; `process` bundles for Node.js.
   * @default "process"
   */
  executor?: ExecutorKind;
  /**
   * Compatibility flags of the function (its `compatibility` config). With `"nodejs"`, an
   * isolate bundle gets the Node compatibility subset (src/build/node-compat.ts): the
   * supported built-ins and the `process`/`Buffer` globals are bundled in.
   * @default []
   */
  compatibility?: readonly string[];
}

/** Bundles one entry file. Throws NIMBUS_BUILD_FAILED with file:line of each error. */
export async function bundle(entry: string, options: BundleOptions = {}): Promise<Bundle> {
  const t0 = performance.now();
  const root = dirname(entry);
  const forIsolate = options.executor === "isolate";
  const nodeCompat = forIsolate && (options.compatibility ?? []).includes("nodejs");
  try {
    const run = (lowerAsync: boolean) =>
      build({
        entryPoints: [entry],
        bundle: true,
        format: "esm",
        sourcemap: "external",
        sourcesContent: false,
        write: false,
        outfile: join(root, "index.mjs"),
        absWorkingDir: root,
        logLevel: "silent",
        metafile: nodeCompat,
        ...(forIsolate
          ? {
              platform: "browser" as const,
              conditions: ["workerd", "worker"],
              target: "es2022",
              external: ["node:*", ...builtinModules],
              ...(nodeCompat
                ? {
                    plugins: [nodeCompatPlugin()],
                    inject: [...NODE_GLOBALS],
                    define: { global: "globalThis" },
                    // AsyncLocalStorage follows the context through .then(), which a native
                    // await skips: lower async functions into generator steps chained by .then.
                    supported: lowerAsync
                      ? { "async-await": false, "async-generator": false, "for-await": false }
                      : {},
                  }
                : {}),
            }
          : {
              platform: "node" as const,
              target: "node24",
              // CommonJS dependencies that call require() on Node built-ins need a real require.
              banner: {
                js: 'import { createRequire as __nimbusCreateRequire } from "node:module"; const require = __nimbusCreateRequire(import.meta.url);',
              },
            }),
      });
    let result = await run(false);
    const inputs = Object.keys(result.metafile?.inputs ?? {});
    if (inputs.some((k) => resolve(root, k) === ASYNC_HOOKS_FILE)) result = await run(true);
    let code = "";
    let sourceMap = "";
    for (const f of result.outputFiles ?? []) {
      if (f.path.endsWith(".map")) sourceMap = f.text;
      else code = f.text;
    }
    // Name sources relative to the function's directory, as the author knows them.
    const map = JSON.parse(sourceMap) as { sources: string[] };
    map.sources = map.sources.map((s) => relative(root, resolve(root, s)));
    return { code, sourceMap: JSON.stringify(map), ms: performance.now() - t0 };
  } catch (err) {
    const errors = (err as { errors?: Message[] }).errors;
    if (errors?.length) {
      throw new NimbusError(
        "NIMBUS_BUILD_FAILED",
        `Bundling ${entry} failed:\n${errors.map(formatMessage).join("\n")}`,
        {
          details: { errors: errors.map(formatMessage) },
        },
      );
    }
    throw new NimbusError("NIMBUS_BUILD_FAILED", `Bundling ${entry} failed: ${(err as Error).message}`);
  }
}
