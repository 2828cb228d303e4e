/**
 * What deriving the Prometheus metrics costs per invocation record (CPU µs), measured in
 * process: `node bench/metrics-cost.ts`. The full throughput comparison (metrics on vs off)
 * is `NIMBUS_BENCH_METRICS=off npm run bench -- warm` against the same command without it.
 */
import { Metrics } from "../src/observability/metrics.ts";
import type { InvocationRecord } from "../src/store/types.ts";

const m = new Metrics({ defaultMetrics: false });
const recs: InvocationRecord[] = Array.from({ length: 1000 }, (_, i) => ({
  id: "x",
  tenant: "default",
  fn: `fn-${i % 20}`,
  version: 1,
  trigger: "http",
  start: 0,
  durationMs: 1 + (i % 50),
  billedMs: 2,
  memoryMB: 128,
  gbSeconds: 0.0002,
  cpuMs: 1,
  coldStart: i % 100 === 0,
  status: 200,
  errorCode: null,
  firstByteMs: 0.5,
  eventId: null,
  attempt: null,
  queueWaitMs: null,
  e2eMs: null,
}));
for (let r = 0; r < 3; r++) {
  const c = process.cpuUsage();
  for (let k = 0; k < 200; k++) m.observeInvocations(recs);
  const used = process.cpuUsage(c);
  console.log(`round ${r}: ${((used.user + used.system) / 200_000).toFixed(2)} CPU µs per invocation record`);
}
m.close();
