/**
 * The Node compatibility modules' one link to the in-isolate runtime: a symbol-keyed global
 * the prelude installs (src/runtime/isolate/prelude/node-hook.ts), through which a module
 * reports that the function uses it (the deploy check compares that with the function's
 * `compatibility` config) and `process.env` reads the function's environment.
 *
 * These modules are bundled into a function's code at deploy time, only when the function
 * opts in with `compatibility: ["nodejs"]`; they import nothing from the platform.
 */

interface Hook {
  use(name: string): void;
  env(): Record<string, string>;
}

const hook = (globalThis as unknown as Record<symbol, Hook | undefined>)[Symbol.for("nimbus.node")];

/** Records that the function uses the compatibility module `name` (e.g. "node:events"). */
export function use(name: string): void {
  hook?.use(name);
}

/** The function's environment (its `env` config), or an empty object outside Nimbus. */
export function functionEnv(): Record<string, string> {
  return hook?.env() ?? {};
}
