/**
 * Node compatibility for the isolate executor (`compatibility: ["nodejs"]`): an esbuild
 * plugin that resolves the supported Node built-ins to implementations bundled into the
 * function, as Workers' `nodejs_compat` provides them. Well-kept npm ports where they exist
 * (`buffer`, `events`, `util`, `assert`, `path-browserify`, `string_decoder`), the
 * platform's own modules for what needs the runtime (`process`, `async_hooks`); see
 * src/runtime/isolate/node/. Only functions that opt in carry these bytes. Every other
 * built-in stays an import the isolate cannot satisfy, so the deploy fails with the usual
 * message.
 */
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin } from "esbuild";

const NODE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../runtime/isolate/node");
const require = createRequire(import.meta.url);

/** A package of the platform's own node_modules (never the function's, never Node's built-in). */
function npm(name: string): string {
  return require.resolve(`${name}/`);
}
function own(file: string): string {
  return resolve(NODE_DIR, file);
}

/** Each supported built-in, as the CommonJS expression its module exports. */
const MODULES: Record<string, () => string> = {
  buffer: () => `require(${JSON.stringify(npm("buffer"))})`,
  events: () => `require(${JSON.stringify(npm("events"))})`,
  util: () => `require(${JSON.stringify(own("util.ts"))}).util`,
  "util/types": () => `require(${JSON.stringify(own("util.ts"))}).util.types`,
  assert: () => `require(${JSON.stringify(npm("assert"))})`,
  "assert/strict": () => `require(${JSON.stringify(npm("assert"))}).strict`,
  path: () => `require(${JSON.stringify(npm("path-browserify"))})`,
  "path/posix": () => `require(${JSON.stringify(npm("path-browserify"))})`,
  string_decoder: () => `require(${JSON.stringify(npm("string_decoder"))})`,
  async_hooks: () => `require(${JSON.stringify(own("async-hooks.ts"))})`,
  process: () => `require(${JSON.stringify(own("process.ts"))}).process`,
};

/** The built-ins `compatibility: ["nodejs"]` provides on the isolate executor. */
export const NODE_COMPAT_MODULES: readonly string[] = Object.keys(MODULES).map((m) => `node:${m}`);

/**
 * The files that define the injected globals (`process`, `Buffer`, `setImmediate`): one per
 * global, since esbuild bundles an inject file (and what it imports) only where its export is
 * named.
 */
export const NODE_GLOBALS: readonly string[] = [
  "global-process.ts",
  "global-buffer.ts",
  "global-immediate.ts",
].map(own);

/** The platform's AsyncLocalStorage module (its presence turns on async/await lowering). */
export const ASYNC_HOOKS_FILE = own("async-hooks.ts");

const FILTER = new RegExp(
  `^(node:)?(${Object.keys(MODULES)
    .map((m) => m.replace("/", "\\/"))
    .join("|")})$`,
);

/** The esbuild plugin that maps the supported built-ins to the bundled implementations. */
export function nodeCompatPlugin(): Plugin {
  return {
    name: "nimbus-node-compat",
    setup(b) {
      b.onResolve({ filter: FILTER }, (args) => ({
        path: args.path.replace(/^node:/, ""),
        namespace: "nimbus-node",
      }));
      // `require("util/")` (as the npm ports write it) names the npm package, not the built-in.
      b.onResolve({ filter: /^[a-z_]+\/$/ }, (args) => {
        const name = args.path.slice(0, -1);
        return name in MODULES ? { path: npm(name) } : undefined;
      });
      // Side-effect free, so that an injected global nobody names costs no bytes.
      b.onResolve({ filter: /^nimbus-npm:/ }, (args) => ({
        path: npm(args.path.slice("nimbus-npm:".length)),
        sideEffects: false,
      }));
      b.onLoad({ filter: /.*/, namespace: "nimbus-node" }, (args) => ({
        // CommonJS, so that `require("events")` in a dependency gets EventEmitter itself.
        contents: `require(${JSON.stringify(own("hook.ts"))}).use(${JSON.stringify(`node:${args.path}`)});\nmodule.exports = ${MODULES[args.path]!()};\n`,
        loader: "js",
        resolveDir: NODE_DIR,
      }));
    },
  };
}
