/**
 * A node:test reporter for `npm run test:security`: collects every test named
 * `attack: <what the attacker does> → <what happens instead>` and writes the table of
 * attacks and results into README.md between the security-table markers, so the README
 * always shows what the last run proved. Other reporters (spec) print the run itself.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

const START = "<!-- security-table:start -->";
const END = "<!-- security-table:end -->";

interface Row {
  file: string;
  attack: string;
  result: string;
  outcome: "contained" | "FAILED" | "skipped";
}

interface TestEvent {
  type: string;
  data: { name?: string; file?: string; skip?: unknown; todo?: unknown; details?: unknown };
}

/** Splits `attack: X → Y` into its two halves; undefined for other test names. */
export function parseAttackName(name: string): { attack: string; result: string } | undefined {
  const m = /^attack:\s*(.+?)\s*(?:→|->)\s*(.+)$/.exec(name);
  if (!m) return undefined;
  return { attack: m[1]!, result: m[2]! };
}

function escapeCell(s: string): string {
  return s.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** Renders the rows as a Markdown table, grouped by file. */
export function renderTable(rows: Row[]): string {
  const lines = [
    "| area | attack | result | outcome |",
    "| --- | --- | --- | --- |",
    ...rows.map(
      (r) => `| ${escapeCell(r.file)} | ${escapeCell(r.attack)} | ${escapeCell(r.result)} | ${r.outcome} |`,
    ),
  ];
  return lines.join("\n");
}

/** The reporter: an async generator over the test event stream, as node:test expects. */
export default async function* securityTable(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const rows: Row[] = [];
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const parsed = parseAttackName(event.data.name ?? "");
    if (!parsed) continue;
    const skipped = event.data.skip !== undefined || event.data.todo !== undefined;
    rows.push({
      file: basename(event.data.file ?? "?", ".test.ts"),
      ...parsed,
      outcome: event.type === "test:fail" ? "FAILED" : skipped ? "skipped" : "contained",
    });
  }
  rows.sort((a, b) => a.file.localeCompare(b.file));
  const readme = join(import.meta.dirname, "..", "..", "README.md");
  const text = readFileSync(readme, "utf8");
  const from = text.indexOf(START);
  const to = text.indexOf(END);
  if (from < 0 || to < from) {
    yield `security table: README.md has no ${START} … ${END} markers; table not written\n`;
    return;
  }
  const table = `${START}\n${renderTable(rows)}\n${END}`;
  writeFileSync(readme, text.slice(0, from) + table + text.slice(to + END.length));
  const failed = rows.filter((r) => r.outcome === "FAILED").length;
  yield `security table: ${rows.length} attacks written to README.md (${failed} failed)\n`;
}
