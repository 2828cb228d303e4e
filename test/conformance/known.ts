/**
 * Subtests of the conformance suite that Node passes and the isolate executor is allowed to
 * fail, per area, each with its reason (listed in src/executors/isolate/README.md too).
 * Empty today: every subtest Node passes, the isolate passes.
 */
export const KNOWN_DIFFERENCES: Record<string, Record<string, string>> = {};
