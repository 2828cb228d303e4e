/**
 * A small dependency-free SVG line chart for benchmark timelines: one shared time x-axis and
 * a stack of panels (e.g. requests/s, latency, instances), each with its own labelled y-axis
 * (linear or logarithmic) and legend. A point whose y is not a finite number breaks the line
 * (an interval without responses has no latency).
 *
 * @example
 * writeFileSync("chart.svg", lineChart({
 *   title: "burst",
 *   xLabel: "time since the first request (s)",
 *   panels: [{ yLabel: "req/s", series: [{ label: "2xx/s", points: [[0, 0], [0.25, 1200]] }] }],
 * }));
 */

/** One line. */
export interface Series {
  label: string;
  /** [x, y] pairs in x order; a non-finite y leaves a gap. */
  points: [number, number][];
  /** CSS colour. @default from a fixed palette, by position in the panel */
  color?: string;
  /** Draw dashed (e.g. a baseline). @default false */
  dashed?: boolean;
  /** Draw a dot at each point too (for sparse series). @default false */
  dots?: boolean;
}

/** One panel: a y-axis and the lines drawn against it. */
export interface Panel {
  /** The y-axis label, with its unit, e.g. "latency (ms)". */
  yLabel: string;
  series: Series[];
  /** Logarithmic y-axis (values ≤ 0 are left out). @default false */
  log?: boolean;
  /** Lowest y shown on a linear axis. @default 0 */
  yMin?: number;
  /** Highest y shown. @default the data's maximum, rounded up to a tick */
  yMax?: number;
}

/** A whole chart. */
export interface ChartSpec {
  title: string;
  /** A second, smaller title line (settings, machine). */
  subtitle?: string;
  xLabel: string;
  panels: Panel[];
  /** Lowest and highest x shown. @default the data's range */
  xRange?: [number, number];
  /** Vertical marker lines, e.g. where the load stopped. */
  markers?: { x: number; label: string }[];
  /** Total width, px. @default 900 */
  width?: number;
  /** Height of each panel's plot area, px. @default 170 */
  panelHeight?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];
const FONT = `font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"`;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Rounds for SVG coordinates (two decimals keep files small). */
function r2(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** "Nice" linear ticks (1, 2, 5 × 10^k steps) covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

/** Tick label: 12,000 → "12k", 0.25 → "0.25". */
function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  if (a >= 1) return String(Number(v.toPrecision(4)));
  if (a === 0) return "0";
  return String(Number(v.toPrecision(2)));
}

/** Renders the chart as a standalone SVG document. */
export function lineChart(spec: ChartSpec): string {
  const width = spec.width ?? 900;
  const ph = spec.panelHeight ?? 170;
  const left = 78;
  const right = 190; // room for the legends
  const top = spec.subtitle ? 58 : 40;
  const gap = 34;
  const bottom = 50;
  const pw = width - left - right;
  const height = top + spec.panels.length * ph + (spec.panels.length - 1) * gap + bottom;

  // x range over every panel.
  let xLo = Number.POSITIVE_INFINITY;
  let xHi = Number.NEGATIVE_INFINITY;
  for (const p of spec.panels)
    for (const s of p.series)
      for (const [x] of s.points) {
        if (x < xLo) xLo = x;
        if (x > xHi) xHi = x;
      }
  if (spec.xRange) [xLo, xHi] = spec.xRange;
  if (!Number.isFinite(xLo) || !Number.isFinite(xHi)) [xLo, xHi] = [0, 1];
  if (xHi <= xLo) xHi = xLo + 1;
  const xTicks = niceTicks(xLo, xHi, 10).filter((t) => t >= xLo - 1e-9 && t <= xHi + 1e-9);
  const sx = (x: number): number => left + ((x - xLo) / (xHi - xLo)) * pw;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${left}" y="22" font-size="16" font-weight="600">${esc(spec.title)}</text>`,
  );
  if (spec.subtitle) out.push(`<text x="${left}" y="42" fill="#555">${esc(spec.subtitle)}</text>`);

  spec.panels.forEach((panel, pi) => {
    const y0 = top + pi * (ph + gap); // top of this plot area
    const finite = panel.series.flatMap((s) =>
      s.points.map(([, y]) => y).filter((y) => Number.isFinite(y) && (!panel.log || y > 0)),
    );
    let sy: (y: number) => number;
    let yTicks: number[];
    if (panel.log) {
      const lo = finite.length ? Math.min(...finite) : 1;
      const hi = panel.yMax ?? (finite.length ? Math.max(...finite) : 10);
      const eLo = Math.floor(Math.log10(lo));
      let eHi = Math.ceil(Math.log10(hi));
      if (eHi <= eLo) eHi = eLo + 1;
      yTicks = [];
      for (let e = eLo; e <= eHi; e++) yTicks.push(10 ** e);
      sy = (y: number) => y0 + ph - ((Math.log10(y) - eLo) / (eHi - eLo)) * ph;
    } else {
      const lo = panel.yMin ?? 0;
      const dataHi = finite.length ? Math.max(...finite) : 1;
      const ticks = niceTicks(lo, panel.yMax ?? Math.max(dataHi, lo + 1e-9), 4);
      // Extend the axis to the first tick at or above the data (the ticks stop below it).
      const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : 1;
      while (panel.yMax === undefined && ticks.at(-1)! < dataHi - step * 1e-9)
        ticks.push(ticks.at(-1)! + step);
      const hi = panel.yMax ?? ticks.at(-1)!;
      yTicks = ticks;
      sy = (y: number) => y0 + ph - ((y - lo) / (hi - lo || 1)) * ph;
    }
    // Grid, y ticks and the y label.
    for (const t of yTicks) {
      const y = sy(t);
      out.push(
        `<line x1="${left}" x2="${left + pw}" y1="${r2(y)}" y2="${r2(y)}" stroke="#e4e4e4"/>`,
        `<text x="${left - 6}" y="${r2(y + 4)}" text-anchor="end" fill="#333">${fmt(t)}</text>`,
      );
    }
    for (const t of xTicks) {
      out.push(`<line x1="${r2(sx(t))}" x2="${r2(sx(t))}" y1="${y0}" y2="${y0 + ph}" stroke="#f0f0f0"/>`);
    }
    out.push(
      `<rect x="${left}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
      `<text transform="translate(${left - 52} ${y0 + ph / 2}) rotate(-90)" text-anchor="middle" fill="#222">${esc(panel.yLabel)}${panel.log ? " (log)" : ""}</text>`,
    );
    // Markers.
    for (const m of spec.markers ?? []) {
      if (m.x < xLo || m.x > xHi) continue;
      const x = r2(sx(m.x));
      out.push(`<line x1="${x}" x2="${x}" y1="${y0}" y2="${y0 + ph}" stroke="#888" stroke-dasharray="2 3"/>`);
      if (pi === 0)
        out.push(`<text x="${r2(sx(m.x) + 4)}" y="${y0 + 14}" fill="#555">${esc(m.label)}</text>`);
    }
    // Lines, clipped to the plot area.
    out.push(
      `<clipPath id="clip${pi}"><rect x="${left}" y="${y0 - 1}" width="${pw}" height="${ph + 2}"/></clipPath>`,
      `<g clip-path="url(#clip${pi})">`,
    );
    panel.series.forEach((s, si) => {
      const color = s.color ?? PALETTE[si % PALETTE.length]!;
      let d = "";
      let pen = false;
      const dots: string[] = [];
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y) || (panel.log && y <= 0) || x < xLo || x > xHi) {
          pen = false;
          continue;
        }
        const px = r2(sx(x));
        const py = r2(sy(y));
        d += `${pen ? "L" : "M"}${px} ${py}`;
        pen = true;
        if (s.dots) dots.push(`<circle cx="${px}" cy="${py}" r="2" fill="${color}"/>`);
      }
      if (d) {
        out.push(
          `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6" stroke-linejoin="round"${s.dashed ? ` stroke-dasharray="6 4"` : ""}/>`,
        );
      }
      out.push(...dots);
    });
    out.push("</g>");
    // Legend, right of the plot.
    panel.series.forEach((s, si) => {
      const color = s.color ?? PALETTE[si % PALETTE.length]!;
      const ly = y0 + 12 + si * 18;
      const lx = left + pw + 14;
      out.push(
        `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2.5"${s.dashed ? ` stroke-dasharray="6 4"` : ""}/>`,
        `<text x="${lx + 28}" y="${ly}" fill="#222">${esc(s.label)}</text>`,
      );
    });
    // x tick labels under every panel (the panels share the axis).
    for (const t of xTicks) {
      out.push(
        `<text x="${r2(sx(t))}" y="${y0 + ph + 15}" text-anchor="middle" fill="#333">${fmt(t)}</text>`,
      );
    }
  });
  out.push(
    `<text x="${left + pw / 2}" y="${height - 12}" text-anchor="middle" fill="#222">${esc(spec.xLabel)}</text>`,
    "</svg>",
  );
  return `${out.join("\n")}\n`;
}
