/**
 * Idle reaping as a pure decision: which instances of one version to stop now.
 * Time is passed in, so tests step the clock.
 */

/** What the decision needs to know of an instance. */
export interface ReapCandidate {
  id: string;
  inflight: number;
  background: number;
  /** Last time an invocation ended on it, ms since the epoch. */
  lastUsed: number;
}

/** The settings the decision honours. */
export interface ReapPolicy {
  idleTimeoutMs: number;
  minInstances: number;
}

/**
 * Returns the ids of instances to stop: those idle (nothing running, no background work)
 * for at least `idleTimeoutMs`, oldest-used first, never leaving fewer than
 * `minInstances` alive.
 *
 * @example
 * // 3 instances, min 1, two idle for 6 min with a 5 min window → stop those two.
 * reapIdle(instances, now, { idleTimeoutMs: 300_000, minInstances: 1 })
 */
export function reapIdle(instances: readonly ReapCandidate[], now: number, policy: ReapPolicy): string[] {
  const removable = instances.length - policy.minInstances;
  if (removable <= 0) return [];
  const idle = instances
    .filter((i) => i.inflight === 0 && i.background === 0 && now - i.lastUsed >= policy.idleTimeoutMs)
    .sort((a, b) => a.lastUsed - b.lastUsed);
  return idle.slice(0, removable).map((i) => i.id);
}
