/**
 * `node:util` for functions that opt into Node compatibility: the npm `util` package (the
 * browser port of Node's util: format, inspect, inherits, deprecate, promisify, callbackify,
 * types, isDeepStrictEqual is not in it) plus the Web TextEncoder/TextDecoder, as Node
 * exports them.
 */
import npmUtil from "nimbus-npm:util";

const u = npmUtil as Record<string, unknown>;
/** ANSI escape sequences (ESC or CSI, then parameters and a final byte). */
const ANSI = new RegExp(
  `[${String.fromCharCode(0x1b, 0x9b)}][[\\]()#;?]*(?:\\d{1,4}(?:;\\d{0,4})*)?[\\dA-ORZcf-nqry=><]`,
  "g",
);

/** The module, as `require("util")` returns it. */
export const util: Record<string, unknown> = {
  ...u,
  TextEncoder: globalThis.TextEncoder,
  TextDecoder: globalThis.TextDecoder,
  isArray: Array.isArray,
  stripVTControlCharacters: (s: string) => String(s).replace(ANSI, ""),
  toUSVString: (s: string) => String(s).toWellFormed(),
};
