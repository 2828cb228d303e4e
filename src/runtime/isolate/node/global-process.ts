/**
 * The `process` global of a function that opts into Node compatibility: injected where the
 * code names it, and set on globalThis too (as Workers' nodejs_compat does), which costs
 * ~3 KB per opted-in bundle.
 */
import { process } from "./process.ts";

Object.defineProperty(globalThis, "process", { value: process, writable: true, configurable: true });

export { process };
