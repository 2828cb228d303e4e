/**
 * `node:util` for functions that opt into Node compatibility: the npm `util` package (the
 * browser port of Node's util: format, inspect, inherits, deprecate, promisify, callbackify,
 * types, isDeepStrictEqual is not in it) plus the Web TextEncoder/TextDecoder, as Node
 * exports them.
 */
import npmUtil from "nimbus-npm:util";

const u = npmUtil as Record<string, unknown>;

/** The module, as `require("util")` returns it. */
export const util: Record<string, unknown> = {
  ...u,
  TextEncoder: globalThis.TextEncoder,
  TextDecoder: globalThis.TextDecoder,
  // Node answers an Error's stack for `inspect` of errors; the package prints it too.
  isArray: Array.isArray,
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC / CSI.
  stripVTControlCharacters: (s: string) =>
    String(s).replace(/[\u001B\u009B][[\]()#;?]*(?:\d{1,4}(?:;\d{0,4})*)?[\dA-ORZcf-nqry=><]/g, ""),
  toUSVString: (s: string) => String(s).toWellFormed(),
};
