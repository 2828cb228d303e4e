/**
 * Reading a function's module: which handler shape it exports, and its inline config. Plain
 * JavaScript with no Node APIs, shared by the process runtime and the isolate runtime.
 */
import type { HandlerShape } from "./protocol.ts";

/** What a loaded module offers. */
export interface ModuleInfo {
  shape: HandlerShape;
  /** `export const config`, JSON-cloned (undefined when absent). */
  config: unknown;
}

/** Finds the handler shape and the inline config; throws with what to export instead. */
export function inspectModule(ns: Record<string, unknown>): ModuleInfo {
  const def = ns.default as { fetch?: unknown } | ((...a: unknown[]) => unknown) | undefined;
  let shape: HandlerShape;
  if (def && typeof def === "object" && typeof def.fetch === "function") shape = "fetch-object";
  else if (typeof def === "function") shape = "fetch-function";
  else if (typeof ns.handler === "function") shape = "lambda";
  else {
    throw new Error(
      "No handler found: export a Web-standard handler (`export default { fetch(request, env, ctx) { … } }` " +
        "or `export default async (request) => new Response(…)`) or an AWS Lambda handler " +
        "(`export const handler = async (event, context) => …`).",
    );
  }
  let config: unknown;
  try {
    config = ns.config === undefined ? undefined : JSON.parse(JSON.stringify(ns.config));
  } catch (err) {
    throw new Error(`export const config must be JSON-serialisable: ${(err as Error).message}`);
  }
  return { shape, config };
}
