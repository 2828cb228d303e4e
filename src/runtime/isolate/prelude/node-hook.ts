/**
 * The prelude's side of Node compatibility (src/runtime/isolate/node/): the bundled Node
 * modules of a function that opts in find the function's environment, and report which of
 * them it uses, through one symbol-keyed global (invisible to `Object.keys(globalThis)` and
 * to `getOwnPropertyNames`). The load result lists the modules used, so the deploy check
 * can hold them against the function's `compatibility` config.
 */

const used = new Set<string>();

/** Installs the hook; `env` returns the function's environment when called. */
export function installNodeHook(env: () => Record<string, string>): void {
  Object.defineProperty(globalThis, Symbol.for("nimbus.node"), {
    value: Object.freeze({
      use(name: unknown) {
        if (used.size < 64) used.add(String(name).slice(0, 64));
      },
      env: () => ({ ...env() }),
    }),
  });
}

/** The Node modules the loaded function used (none for most functions). */
export function nodeModulesUsed(): string[] {
  return [...used];
}
