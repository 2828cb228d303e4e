/**
 * The ready Grafana dashboard (examples/grafana/nimbus-dashboard.json) only queries metrics
 * and labels the platform exports, so it does not rot silently when a metric is renamed.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Metrics } from "./metrics.ts";

const FILE = new URL("../../examples/grafana/nimbus-dashboard.json", import.meta.url);

test("the Grafana dashboard queries only metrics and labels Nimbus exports", async () => {
  const dashboard = JSON.parse(readFileSync(FILE, "utf8")) as {
    panels: { title: string; targets: { expr: string }[] }[];
  };
  const m = new Metrics({ defaultMetrics: false });
  try {
    const exported = new Map((await m.registry.getMetricsAsJSON()).map((x) => [x.name, x] as const));
    const labelsOf = (name: string): Set<string> => {
      const inst = m.registry.getSingleMetric(name) as unknown as { labelNames?: string[] } | undefined;
      return new Set([...(inst?.labelNames ?? []), "le"]);
    };
    assert.ok(dashboard.panels.length >= 10);
    for (const p of dashboard.panels) {
      for (const t of p.targets) {
        const names = t.expr.match(/nimbus_[a-z_]+/g) ?? [];
        assert.ok(names.length > 0, `${p.title}: no Nimbus metric in ${t.expr}`);
        for (const raw of names) {
          const name = raw.replace(/_(bucket|sum|count)$/, "");
          assert.ok(exported.has(name), `${p.title}: ${raw} is not exported`);
          // Label names used in selectors and `by (...)` clauses exist on that metric.
          for (const sel of t.expr.matchAll(new RegExp(`${raw}\\{([^}]*)\\}`, "g"))) {
            for (const l of sel[1]!.matchAll(/([a-z_]+)\s*=~?/g)) {
              assert.ok(labelsOf(name).has(l[1]!), `${p.title}: ${name} has no label ${l[1]}`);
            }
          }
        }
      }
    }
  } finally {
    m.close();
  }
});
