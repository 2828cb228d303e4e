/**
 * Source-mapped stack traces for isolates: rewrites `file:///fn/index.mjs:line:col` in a
 * stack (or any log text) to the original source position from the bundle's source map,
 * as Node's --enable-source-maps does for the process executor. The map is decoded only
 * when a stack first needs it.
 */

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Int8Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** One generated line's segments: [generatedColumn, sourceIndex, originalLine, originalColumn]. */
type Segment = [number, number, number, number];

/** A decoded source map (mappings only). */
export class SourceMap {
  private readonly raw: string;
  private lines: Segment[][] | undefined;
  private sources: string[] = [];

  constructor(raw: string) {
    this.raw = raw;
  }

  private decode(): Segment[][] {
    if (this.lines) return this.lines;
    const map = JSON.parse(this.raw) as { sources?: string[]; sourceRoot?: string; mappings?: string };
    this.sources = (map.sources ?? []).map((s) =>
      map.sourceRoot ? `${map.sourceRoot.replace(/\/$/, "")}/${s}` : s,
    );
    const lines: Segment[][] = [];
    let src = 0;
    let oLine = 0;
    let oCol = 0;
    for (const line of (map.mappings ?? "").split(";")) {
      const segs: Segment[] = [];
      let gCol = 0;
      for (const seg of line.split(",")) {
        if (!seg) continue;
        const v = vlq(seg);
        gCol += v[0] ?? 0;
        if (v.length >= 4) {
          src += v[1]!;
          oLine += v[2]!;
          oCol += v[3]!;
          segs.push([gCol, src, oLine, oCol]);
        }
      }
      lines.push(segs);
    }
    this.lines = lines;
    return lines;
  }

  /** The original position of a generated one (1-based line, 1-based column), if mapped. */
  lookup(line: number, column: number): { source: string; line: number; column: number } | undefined {
    const segs = this.decode()[line - 1];
    if (!segs || segs.length === 0) return undefined;
    const col = column - 1;
    let best: Segment | undefined;
    for (const s of segs) {
      if (s[0] <= col) best = s;
      else break;
    }
    best ??= segs[0]!;
    const source = this.sources[best[1]];
    if (source === undefined) return undefined;
    return { source, line: best[2] + 1, column: best[3] + 1 };
  }

  /** Rewrites every bundle position in `text` to its original source position. */
  rewrite(text: string): string {
    if (!text.includes("file:///fn/index.mjs:")) return text;
    return text.replace(/file:\/\/\/fn\/index\.mjs:(\d+):(\d+)/g, (whole, l: string, c: string) => {
      try {
        const o = this.lookup(Number(l), Number(c));
        return o ? `file:///fn/${o.source}:${o.line}:${o.column}` : whole;
      } catch {
        return whole;
      }
    });
  }
}

function vlq(s: string): number[] {
  const out: number[] = [];
  let value = 0;
  let shift = 0;
  for (let i = 0; i < s.length; i++) {
    const d = B64_INDEX[s.charCodeAt(i)] ?? -1;
    if (d < 0) throw new Error("bad VLQ");
    value += (d & 31) << shift;
    if (d & 32) shift += 5;
    else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}
