/**
 * The platform's own log (not functions' logs): one pino logger, JSON lines on stderr, or
 * a compact human form when stderr is a terminal (a small built-in printer instead of the
 * pino-pretty dependency). Lines about one request carry `reqId`; lines about one
 * invocation carry `invocationId` (the id in `x-nimbus-invocation-id` and in `nimbus logs`).
 */
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import pino, { type Logger } from "pino";

export type { Logger } from "pino";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default $NIMBUS_LOG_LEVEL, else "info" */
  level?: string;
  /** Human-readable lines instead of JSON. @default stderr is a TTY and $NIMBUS_LOG_FORMAT is not "json" */
  pretty?: boolean;
  /** Where lines go. @default process.stderr */
  destination?: NodeJS.WritableStream;
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO ",
  40: "WARN ",
  50: "ERROR",
  60: "FATAL",
};
const SKIP = new Set(["level", "time", "msg", "pid", "hostname", "v"]);

/** Formats one pino JSON line for a terminal: `12:00:01.123 WARN  message key=value …`. */
export function prettyLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const t = typeof o.time === "number" ? new Date(o.time).toISOString().slice(11, 23) : "";
  const level = LEVEL_NAMES[Number(o.level)] ?? String(o.level);
  const extra: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (SKIP.has(k)) continue;
    extra.push(`${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  }
  return `${t} ${level} ${String(o.msg ?? "")}${extra.length ? `  ${extra.join(" ")}` : ""}\n`;
}

/** A stream that turns pino's JSON lines into {@link prettyLine}s on `out`. */
function prettyStream(out: NodeJS.WritableStream): Writable {
  let rest = "";
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      rest += chunk.toString("utf8");
      let i = rest.indexOf("\n");
      while (i >= 0) {
        out.write(prettyLine(rest.slice(0, i)));
        rest = rest.slice(i + 1);
        i = rest.indexOf("\n");
      }
      done();
    },
  });
}

/** Creates the platform logger. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const dest = opts.destination ?? process.stderr;
  const pretty =
    opts.pretty ?? (Boolean((dest as { isTTY?: boolean }).isTTY) && process.env.NIMBUS_LOG_FORMAT !== "json");
  return pino(
    {
      level: opts.level ?? process.env.NIMBUS_LOG_LEVEL ?? "info",
      base: { pid: process.pid },
      // Keys never written even if a caller passes them along.
      redact: {
        paths: ["authorization", "req.headers.authorization", "req.headers.cookie", "adminKey"],
        remove: true,
      },
    },
    pretty ? prettyStream(dest) : (dest as pino.DestinationStream),
  );
}

/**
 * The `(msg: string) => void` callback older modules take, on top of a logger: the
 * `nimbus: ` prefix goes (the logger says who is talking), and messages that report a
 * failure are warnings.
 */
export function messageLog(logger: Logger): (msg: string) => void {
  return (msg: string) => {
    const text = msg.startsWith("nimbus: ") ? msg.slice(8) : msg;
    if (/\bfail|error|refused|stopped/i.test(text)) logger.warn(text);
    else logger.info(text);
  };
}

const REQ_PREFIX = randomBytes(4).toString("hex");
let reqSeq = 0;

/** A request id unique to this server run (`<random>-<counter>`): cheap, and sortable per run. */
export function requestId(): string {
  reqSeq = (reqSeq + 1) % Number.MAX_SAFE_INTEGER;
  return `${REQ_PREFIX}-${reqSeq.toString(36)}`;
}

/** The level a finished control-API request is logged at: failures loud, reads quiet. */
export function requestLevel(method: string, status: number): "error" | "warn" | "info" | "debug" {
  if (status >= 500) return "error";
  if (status === 401 || status === 403 || status === 429) return "warn";
  return method === "GET" || method === "HEAD" ? "debug" : "info";
}
