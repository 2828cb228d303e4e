/**
 * Test helpers: start the real `nimbus serve` as a child process on a random port with a
 * temporary data directory, run the real CLI against it, deploy fixtures over the API.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundle } from "../src/build/bundle.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const FIXTURES = join(ROOT, "test/fixtures");
const MAIN = join(ROOT, "src/cli/main.ts");

/** A running `nimbus serve` child process. */
export interface TestServer {
  url: string;
  dataDir: string;
  adminKey: string;
  proc: ChildProcess;
  stdout: () => string;
  /** Sends SIGTERM and waits for the exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Runs the CLI against this server. */
  cli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Bundles and deploys a fixture file through the API. Returns the parsed answer and status. */
  deploy(
    name: string,
    file: string,
    config?: Record<string, unknown>,
  ): Promise<{ status: number; body: any }>;
  /** fetch against the server with the admin key. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

/** Starts a server; `dataDir` reuses a directory (restart tests). */
export async function startTestServer(
  opts: {
    dataDir?: string;
    args?: string[];
    env?: Record<string, string>;
    /** Give the server an inherited pipe on fd 9 (as a launcher might), to prove it does not leak. */
    leakFd?: boolean;
  } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "nimbus-test-"));
  const proc = spawn(
    process.execPath,
    [
      "--no-node-snapshot",
      "--disable-warning=ExperimentalWarning",
      MAIN,
      "serve",
      "--port",
      "0",
      "--data-dir",
      dataDir,
      "--prewarm",
      "1",
      ...(opts.args ?? []),
    ],
    {
      stdio: opts.leakFd
        ? ["ignore", "pipe", "pipe", "ignore", "ignore", "ignore", "ignore", "ignore", "ignore", "pipe"]
        : ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...opts.env },
    },
  );
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (s: string) => {
    out += s;
  });
  proc.stderr!.setEncoding("utf8").on("data", (s: string) => {
    err += s;
  });
  const url = await new Promise<string>((res, rej) => {
    // Generous for a loaded machine; a server that did not start is not left running.
    const t = setTimeout(() => {
      proc.kill("SIGKILL");
      rej(new Error(`server did not start in 60 s:\n${out}\n${err}`));
    }, 60_000);
    const check = () => {
      const m = /Nimbus is running at (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res(m[1]!);
      }
    };
    proc.stdout!.on("data", check);
    proc.on("exit", (code) => rej(new Error(`server exited with ${code}:\n${out}\n${err}`)));
  });
  const { readFileSync } = await import("node:fs");
  const adminKey = readFileSync(join(dataDir, "admin.key"), "utf8").trim();
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${adminKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: any = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, body: parsed };
  };
  const server: TestServer = {
    url,
    dataDir,
    adminKey,
    proc,
    stdout: () => out + err,
    stop(signal = "SIGTERM") {
      // A process ended by a signal has no exit code, only a signal code.
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((res) => {
        proc.once("exit", (code) => res(code));
        proc.kill(signal);
      });
    },
    cli(args, input) {
      return new Promise((res) => {
        const child = execFile(
          process.execPath,
          ["--disable-warning=ExperimentalWarning", MAIN, ...args],
          {
            env: { ...process.env, NIMBUS_URL: url, NIMBUS_HOME: dataDir, NIMBUS_TOKEN: "" },
            maxBuffer: 64 << 20,
          },
          (error, stdout, stderr) => res({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
        );
        if (input !== undefined) child.stdin!.end(input);
        else child.stdin!.end();
      });
    },
    async deploy(name, file, config = {}) {
      const b = await bundle(resolve(FIXTURES, file));
      return api("POST", `/api/v1/functions/${name}/versions`, {
        code: b.code,
        sourceMap: b.sourceMap,
        config,
      });
    },
    api,
  };
  return server;
}

/**
 * Writes `source` as `<dir>/<name>.ts`, bundles it for the isolate executor and deploys it
 * with `executor: "isolate"` (plus `config`) to a server started in-process.
 */
export async function deployIsolateSource(
  s: { url: string; adminKey: string },
  dir: string,
  name: string,
  source: string,
  config: Record<string, unknown> = {},
): Promise<{ status: number; body: any }> {
  const { writeFileSync } = await import("node:fs");
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, source);
  const compatibility = config.compatibility as string[] | undefined;
  const b = await bundle(file, { executor: "isolate", compatibility });
  const r = await fetch(`${s.url}/api/v1/functions/${name}/versions`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({
      code: b.code,
      sourceMap: b.sourceMap,
      config: { executor: "isolate", ...config },
    }),
  });
  const text = await r.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body };
}

/** Removes a test data directory. */
export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Sleeps. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Server flags of the Jepsen-style checkers: fast retries, a short queue wait and lease grace
 * (so a SIGKILLed server's leases end soon), and 127.0.0.1/32 granted, so that the functions
 * can report to the test's counter on loopback (the egress policy refuses loopback otherwise).
 */
export const CHECKER_ARGS = [
  "--retry-base",
  "20",
  "--queue-wait",
  "2000",
  "--lease-grace",
  "500",
  "--egress-allow",
  "127.0.0.1/32",
];
