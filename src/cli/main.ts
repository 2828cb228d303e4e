/**
 * The `nimbus` command. Every command except `serve` talks only to the control API.
 * Exit codes: 0 success, 1 a user error (bad input, function failed), 2 a platform or
 * connection error.
 */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { bundle, resolveSources } from "../build/bundle.ts";
import { parseDuration, type ServerLimits } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import { Client, fromBody } from "./client.ts";
import { invokeAsync, registerEventCommands } from "./events.ts";
import { registerQueueCommands } from "./queues.ts";
import { readSse } from "./sse.ts";
import { registerTopCommand } from "./top.ts";
import { registerTriggerCommands } from "./triggers.ts";

process.removeAllListeners("warning");

const program = new Command();
program
  .name("nimbus")
  .description(
    "Nimbus: deploy a function, get a URL. Talks to the server at $NIMBUS_URL (default http://127.0.0.1:7070).",
  )
  .showHelpAfterError();

// ---- output: one place formats success and errors ----
function out(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => String(c).padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function fail(err: unknown, json: boolean): never {
  const e =
    err instanceof NimbusError
      ? err
      : new NimbusError("NIMBUS_INTERNAL", (err as Error)?.message ?? String(err));
  if (json) process.stderr.write(`${JSON.stringify(e.toBody(), null, 2)}\n`);
  else {
    process.stderr.write(`error ${e.code}: ${e.message}\n`);
    const d = e.details as { stack?: string; location?: string } | undefined;
    if (d?.location) process.stderr.write(`  at ${d.location}\n`);
    if (d?.stack)
      process.stderr.write(
        `${d.stack
          .split("\n")
          .map((l) => `  ${l}`)
          .join("\n")}\n`,
      );
  }
  process.exit(e.errorClass === "user" ? 1 : 2);
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void>) {
  return async (...args: A): Promise<void> => {
    const opts = args.find((a) => a && typeof a === "object" && !(a instanceof Command)) as
      | { json?: boolean }
      | undefined;
    try {
      await fn(...args);
    } catch (err) {
      fail(err, Boolean(opts?.json));
    }
  };
}

const ms = (n: number) => `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;
const when = (t: number) =>
  new Date(t)
    .toISOString()
    .replace("T", " ")
    .replace(/\.\d+Z$/, "Z");

program
  .command("serve")
  .description("Run the platform (data plane and control API) on this machine")
  .addOption(new Option("-p, --port <port>", "port to listen on").env("NIMBUS_PORT").default("7070"))
  .addOption(new Option("--host <host>", "address to bind").env("NIMBUS_BIND").default("127.0.0.1"))
  .addOption(new Option("--data-dir <dir>", "data directory").env("NIMBUS_HOME").default(".nimbus"))
  .option("--prewarm <n>", "pre-started runtimes kept per memory size", "2")
  .addOption(
    new Option(
      "--isolation <mode>",
      'isolate executor, for functions whose config does not say: "isolate" (an isolate each) or "context" (a context each in an isolate shared by the tenant\'s functions of one memory size: ~7x denser, but one function\'s runaway stops its neighbours)',
    )
      .choices(["isolate", "context"])
      .default("isolate"),
  )
  .option(
    "--no-sandbox",
    "run functions without bubblewrap/cgroups: local development mode, loopback only (said loudly)",
  )
  .addOption(
    new Option(
      "--insecure-no-sandbox",
      "INSECURE: run functions unsandboxed even when listening beyond loopback (also NIMBUS_SANDBOX=off)",
    ),
  )
  .option(
    "--egress-allow <rule...>",
    "grant functions a non-public address, CIDR range or host name (default: public addresses only)",
  )
  .option("--max-concurrency <n>", "invocations running at once on this machine, all functions", "1000")
  .option(
    "--memory-budget <mb>",
    "memory all instances together may be given (default: machine memory less the reserve)",
  )
  .option("--memory-reserve <mb>", "memory kept free for the system", "1024")
  .option("--queue-wait <ms>", "how long a request may wait for an instance before 429", "10000")
  .option(
    "--headers-timeout <ms>",
    "clients must send request headers within this (slow-loris cut-off)",
    "10000",
  )
  .option("--max-connections <n>", "connections open at once, all callers (503 past it)", "16384")
  .option(
    "--max-buffered-body <mb>",
    "request body MB all requests together may hold in memory (503 past it)",
    "256",
  )
  .option("--log-retention <days>", "days log lines are kept", "7")
  .option("--log-max-mb <mb>", "log MB kept per function (oldest lines go first)", "256")
  .option("--log-rate <kb>", "log KB per second one function may write (bursts of 8x)", "1024")
  .option("--log-invocation-lines <n>", "log lines one invocation may write", "10000")
  .option(
    "--log-stream-buffer <kb>",
    "KB a live log stream (logs --follow, dashboard tail) may have waiting for a slow client before it is cut off",
    "1024",
  )
  .addOption(
    new Option("--max-idle-timeout <duration>", "longest idleTimeout a function may ask for (e.g. 15m)")
      .env("NIMBUS_MAX_IDLE_TIMEOUT")
      .default("15m"),
  )
  .addOption(
    new Option("--max-min-instances <n>", "largest minInstances a function may ask for")
      .env("NIMBUS_MAX_MIN_INSTANCES")
      .default("10"),
  )
  .addOption(
    new Option("--max-max-instances <n>", "largest maxInstances a function may ask for")
      .env("NIMBUS_MAX_MAX_INSTANCES")
      .default("100"),
  )
  .addOption(
    new Option("--max-memory <mb>", "largest memory (MB) a function may ask for")
      .env("NIMBUS_MAX_MEMORY")
      .default("4096"),
  )
  .addOption(
    new Option("--max-timeout <duration>", "longest timeout a function may ask for (e.g. 15m)")
      .env("NIMBUS_MAX_TIMEOUT")
      .default("15m"),
  )
  .addOption(
    new Option(
      "--max-cpu <cores>",
      "largest cpu (cores of this machine one instance may use) a function may ask for (default: all cores)",
    ).env("NIMBUS_MAX_CPU"),
  )
  .option(
    "--no-freeze",
    "do not freeze idle instances (debugging only: idle instances then run unmetered; also NIMBUS_FREEZE=off)",
  )
  .option("--async-share <fraction>", "share of each function's concurrency async events may use", "0.5")
  .option(
    "--retry-base <ms>",
    "delay before the first retry of a failed async event (doubles per retry)",
    "1000",
  )
  .option("--lease-grace <ms>", "added to an async attempt's lease beyond queue wait + timeout", "5000")
  .option(
    "--schedule-prewarm <duration>",
    "start an instance this long before each schedule tick, so scheduled runs are warm (0 = off)",
    "5s",
  )
  .addOption(
    new Option(
      "--metrics-auth <mode>",
      "who may read GET /metrics: auto (loopback without a key, others need an admin key), key (everyone needs one), none",
    )
      .choices(["auto", "key", "none"])
      .default("auto"),
  )
  .addOption(
    new Option(
      "--otlp-endpoint <url>",
      "export traces over OTLP/HTTP (JSON) to this collector, e.g. http://127.0.0.1:4318 (/v1/traces is added)",
    ).env("NIMBUS_OTLP_ENDPOINT"),
  )
  .action(
    action(
      async (o: {
        port: string;
        host: string;
        dataDir: string;
        prewarm: string;
        isolation: "isolate" | "context";
        sandbox: boolean;
        insecureNoSandbox?: boolean;
        egressAllow?: string[];
        maxConcurrency: string;
        memoryBudget?: string;
        memoryReserve: string;
        queueWait: string;
        headersTimeout: string;
        maxConnections: string;
        maxBufferedBody: string;
        logRetention: string;
        logMaxMb: string;
        logStreamBuffer: string;
        logRate: string;
        logInvocationLines: string;
        maxIdleTimeout: string;
        maxMinInstances: string;
        maxMaxInstances: string;
        maxMemory: string;
        maxTimeout: string;
        maxCpu?: string;
        freeze: boolean;
        asyncShare: string;
        retryBase: string;
        leaseGrace: string;
        schedulePrewarm: string;
        metricsAuth: "auto" | "key" | "none";
        otlpEndpoint?: string;
      }) => {
        const num = (flag: string, v: string | undefined, min: number): number | undefined => {
          if (v === undefined) return undefined;
          const n = Number(v);
          if (!Number.isInteger(n) || n < min) {
            throw new NimbusError(
              "NIMBUS_BAD_REQUEST",
              `--${flag} must be a whole number >= ${min}, got '${v}'.`,
            );
          }
          return n;
        };
        const fraction = (flag: string, v: string): number => {
          const n = Number(v);
          if (!(n > 0 && n <= 1))
            throw new NimbusError("NIMBUS_BAD_REQUEST", `--${flag} must be a number in (0, 1], got '${v}'.`);
          return n;
        };
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          throw new NimbusError(
            "NIMBUS_BAD_REQUEST",
            `--port must be a number from 0 to 65535, got '${o.port}'.`,
          );
        }
        const duration = (flag: string, v: string): number => {
          try {
            return parseDuration(flag, /^\d+(\.\d+)?$/.test(v) ? Number(v) : v);
          } catch {
            throw new NimbusError(
              "NIMBUS_BAD_REQUEST",
              `--${flag} must be seconds or a duration like 15m, 30s, 1h; got '${v}'.`,
            );
          }
        };
        let maxCpu: number | undefined;
        if (o.maxCpu !== undefined) {
          maxCpu = Number(o.maxCpu);
          if (!Number.isFinite(maxCpu) || maxCpu < 0.05) {
            throw new NimbusError(
              "NIMBUS_BAD_REQUEST",
              `--max-cpu must be a number of cores >= 0.05, got '${o.maxCpu}'.`,
            );
          }
        }
        const limits: Partial<ServerLimits> = {
          maxIdleTimeoutMs: duration("max-idle-timeout", o.maxIdleTimeout),
          maxMinInstances: num("max-min-instances", o.maxMinInstances, 0),
          maxMaxInstances: num("max-max-instances", o.maxMaxInstances, 1),
          maxMemoryMB: num("max-memory", o.maxMemory, 64),
          maxTimeoutMs: duration("max-timeout", o.maxTimeout),
        };
        if (maxCpu !== undefined) limits.maxCpu = maxCpu;
        const { startServer } = await import("../server.ts");
        const s = await startServer({
          port,
          host: o.host,
          dataDir: o.dataDir,
          prewarm: num("prewarm", o.prewarm, 0),
          isolation: o.isolation,
          noSandbox: !o.sandbox,
          insecureNoSandbox: o.insecureNoSandbox,
          egressAllow: o.egressAllow,
          maxConcurrency: num("max-concurrency", o.maxConcurrency, 1),
          memoryBudgetMB: num("memory-budget", o.memoryBudget, 64),
          memoryReserveMB: num("memory-reserve", o.memoryReserve, 0),
          queueWaitMs: num("queue-wait", o.queueWait, 0),
          headersTimeoutMs: num("headers-timeout", o.headersTimeout, 100),
          maxConnections: num("max-connections", o.maxConnections, 1),
          maxBufferedBodyBytes: (num("max-buffered-body", o.maxBufferedBody, 6) ?? 256) * 1024 * 1024,
          logRetentionDays: num("log-retention", o.logRetention, 1),
          logMaxBytesPerFunction: (num("log-max-mb", o.logMaxMb, 1) ?? 256) * 1024 * 1024,
          logStreams: { bufferBytes: (num("log-stream-buffer", o.logStreamBuffer, 16) ?? 1024) * 1024 },
          logQuota: {
            functionBytesPerSecond: (num("log-rate", o.logRate, 1) ?? 1024) * 1024,
            functionBurstBytes: (num("log-rate", o.logRate, 1) ?? 1024) * 1024 * 8,
            invocationLines: num("log-invocation-lines", o.logInvocationLines, 1),
          },
          limits,
          freeze: o.freeze && process.env.NIMBUS_FREEZE !== "off",
          events: {
            asyncShare: fraction("async-share", o.asyncShare),
            retryBaseMs: num("retry-base", o.retryBase, 1),
            leaseGraceMs: num("lease-grace", o.leaseGrace, 0),
            schedulePrewarmMs: /^0+(\.0+)?(ms|s|m|h)?$/.test(o.schedulePrewarm)
              ? 0
              : duration("schedule-prewarm", o.schedulePrewarm),
          },
          metricsAuth: o.metricsAuth,
          otlpEndpoint: o.otlpEndpoint,
        });
        const p = s.protections;
        const lines = [
          `Nimbus is running at ${s.url}`,
          `  data directory: ${s.dataDir}`,
          `  admin key:      ${s.dataDir}/admin.key (the CLI on this machine finds it)`,
          `  sandbox:        ${p.bwrap ? "bubblewrap active" : "bubblewrap OFF"}; cgroups ${p.cgroups ?? "OFF"}${p.cgroups ? ` (memory ${p.memoryLimit ? "on" : "off"}, cpu ${p.cpuLimit ? "on" : "off"}, pids ${p.pidsLimit ? "on" : "off"})` : ""}`,
        ];
        lines.push(`  mode:           ${s.mode}`);
        lines.push(
          `  idle instances: ${s.freezing ? "frozen (cgroup freezer)" : "NOT frozen (--no-freeze, or no freezer controller): code may run between invocations"}`,
        );
        if (p.off.length) lines.push(...p.off.map((x) => `  WARNING, protection off: ${x}`));
        if (s.warning) lines.push(`  WARNING: ${s.warning}`);
        lines.push(
          "",
          "Deploy your first function:",
          "  npx nimbus deploy examples/hello.ts",
          `  curl ${s.url}/fn/hello`,
          "",
          `Control API: ${s.url}/api/v1/openapi.json`,
        );
        process.stdout.write(`${lines.join("\n")}\n`);
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          process.stdout.write(`${sig}: finishing in-flight invocations, then stopping…\n`);
          s.close(30_000).then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.on("SIGTERM", () => stop("SIGTERM"));
        process.on("SIGINT", () => stop("SIGINT"));
      },
    ),
  );

program
  .command("deploy")
  .description("Bundle and deploy a function file, or a directory with a nimbus.json")
  .argument("<path>", "a .ts/.js file, or a directory with nimbus.json")
  .option("-n, --name <name>", "function name (default: the file name)")
  .option("--executor <kind>", "process | isolate (overrides config)")
  .option("--json", "print JSON")
  .action(
    action(async (path: string, o: { name?: string; executor?: string; json?: boolean }) => {
      const client = new Client();
      const sources = resolveSources(path);
      if (o.name && sources.length > 1) {
        throw new NimbusError(
          "NIMBUS_BAD_REQUEST",
          "--name applies to a single function; this nimbus.json declares several.",
        );
      }
      const results: unknown[] = [];
      const progress = (s: string) => {
        if (!o.json) process.stderr.write(s);
      };
      for (const src of sources) {
        const name = o.name ?? src.name;
        const config = { ...src.config };
        if (o.executor) config.executor = o.executor;
        progress(`${name}: bundling ${src.entry} … `);
        // Isolate bundles take packages' Workers/browser builds (known from nimbus.json or
        // --executor; an inline-only `executor` gets the default build, which works too).
        const b = await bundle(src.entry, {
          executor: config.executor === "isolate" ? "isolate" : undefined,
          compatibility: Array.isArray(config.compatibility) ? (config.compatibility as string[]) : undefined,
        });
        progress(
          `${ms(b.ms)} (${(b.code.length / 1024).toFixed(1)} KiB)\n${name}: uploading and activating … `,
        );
        const t0 = performance.now();
        const r = await client.json<any>("POST", `/api/v1/functions/${encodeURIComponent(name)}/versions`, {
          code: b.code,
          sourceMap: b.sourceMap,
          config,
        });
        const total = performance.now() - t0;
        progress(
          `${ms(total)} (load check ${ms(r.checkMs)})\n${name}: ${r.created ? `version ${r.version.version} is live` : `unchanged, version ${r.version.version} is live`}\n`,
        );
        if (r.warning) process.stderr.write(`WARNING: ${r.warning}\n`);
        results.push({ ...r, bundleMs: b.ms, uploadMs: total - r.checkMs });
        if (!o.json) process.stdout.write(`${r.url}\n`);
      }
      if (o.json) out(true, sources.length === 1 ? results[0] : results, () => "");
    }),
  );

program
  .command("invoke")
  .description("Invoke a function and print its response (body from --data, --data @file, or stdin)")
  .argument("<name>", "function name")
  .option("-d, --data <data>", "request body, or @file to read it from a file")
  .option("--path <path>", "path (and query) the function sees", "/")
  .option("-X, --method <method>", "HTTP method the function sees (default POST with data, else GET)")
  .option("--version <n>", "invoke this version instead of latest")
  .option("-H, --header <header...>", "extra request header 'name: value'")
  .option("--json", "print status, headers and body as JSON")
  .option(
    "--async",
    "invoke asynchronously: the body is the event; prints the invocation id once it is stored",
  )
  .option("--idempotency-key <key>", "with --async: a repeat with the same key within 24 h is not run again")
  .action(
    action(
      async (
        name: string,
        o: {
          data?: string;
          path: string;
          method?: string;
          version?: string;
          header?: string[];
          json?: boolean;
          async?: boolean;
          idempotencyKey?: string;
        },
      ) => {
        const client = new Client();
        let body: Buffer | undefined;
        if (o.data !== undefined)
          body = o.data.startsWith("@") ? readFileSync(o.data.slice(1)) : Buffer.from(o.data);
        else if (!process.stdin.isTTY) {
          const chunks: Buffer[] = [];
          for await (const c of process.stdin) chunks.push(c as Buffer);
          if (chunks.length) body = Buffer.concat(chunks);
        }
        if (o.async) {
          const r = await invokeAsync(name, body, o);
          out(Boolean(o.json), r, () =>
            r.duplicate
              ? `${r.invocationId} (already accepted with this idempotency key; not run again)`
              : `${r.invocationId} (queued; see 'nimbus invocation ${r.invocationId}')`,
          );
          return;
        }
        const headers: Record<string, string> = {};
        if (body && body.length > 0) {
          const t = body.toString("utf8", 0, Math.min(body.length, 64)).trimStart();
          headers["content-type"] =
            t.startsWith("{") || t.startsWith("[") ? "application/json" : "application/octet-stream";
        }
        for (const h of o.header ?? []) {
          const i = h.indexOf(":");
          if (i < 1)
            throw new NimbusError("NIMBUS_BAD_REQUEST", `--header must look like 'name: value', got '${h}'.`);
          headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
        }
        const method = o.method ?? (body && body.length > 0 ? "POST" : "GET");
        const q = new URLSearchParams({ path: o.path, method });
        if (o.version) q.set("version", o.version);
        const res = await client.raw("POST", `/api/v1/functions/${encodeURIComponent(name)}/invoke?${q}`, {
          body: body && body.length > 0 ? new Uint8Array(body) : undefined,
          headers: body && body.length > 0 ? headers : { ...headers },
        });
        const data = Buffer.from(await res.arrayBuffer());
        const isPlatformError = !res.ok && res.headers.get("x-nimbus-invocation-id") === null;
        if (isPlatformError) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(data.toString("utf8"));
          } catch {
            parsed = { error: { message: data.toString("utf8") } };
          }
          throw fromBody(res.status, parsed);
        }
        if (o.json) {
          const hs: Record<string, string> = {};
          res.headers.forEach((v, k) => {
            hs[k] = v;
          });
          out(true, { status: res.status, headers: hs, body: data.toString("utf8") }, () => "");
        } else {
          process.stdout.write(data);
          if (data.length > 0 && data[data.length - 1] !== 10 && process.stdout.isTTY)
            process.stdout.write("\n");
          if (res.status >= 400) {
            process.stderr.write(
              `(status ${res.status}, invocation ${res.headers.get("x-nimbus-invocation-id")})\n`,
            );
            process.exitCode = 1;
          }
        }
      },
    ),
  );

program
  .command("ls")
  .description("List deployed functions")
  .option("--json", "print JSON")
  .action(
    action(async (o: { json?: boolean }) => {
      const r = await new Client().json<any>("GET", "/api/v1/functions");
      out(Boolean(o.json), r, () =>
        r.functions.length === 0
          ? "No functions yet. Deploy one: npx nimbus deploy examples/hello.ts"
          : table([
              ["NAME", "VERSION", "EXECUTOR", "INSTANCES", "UPDATED", "URL"],
              ...r.functions.map((f: any) => [
                f.name,
                f.latest,
                f.executor,
                f.instances,
                when(f.updatedAt),
                f.url,
              ]),
            ]),
      );
    }),
  );

program
  .command("info")
  .description("Show a function: latest version, config, instances, sandbox")
  .argument("<name>")
  .option("--json", "print JSON")
  .action(
    action(async (name: string, o: { json?: boolean }) => {
      const r = await new Client().json<any>("GET", `/api/v1/functions/${encodeURIComponent(name)}`);
      out(Boolean(o.json), r, () => {
        const c = r.version.config;
        return [
          `${r.name}  ${r.url}`,
          `  latest version: ${r.latest} (${r.version.hash.slice(0, 12)}, ${(r.version.sizeBytes / 1024).toFixed(1)} KiB, ${when(r.version.createdAt)})`,
          `  executor:       ${c.executor}`,
          `  memory:         ${c.memory} MB   timeout: ${c.timeoutMs} ms   concurrency: ${c.concurrency}`,
          `  instances:      min ${c.minInstances}, max ${c.maxInstances}; now ${r.instances.busy} busy, ${r.instances.idle} idle, ${r.instances.starting} starting, ${r.instances.queued} queued`,
          `  idle timeout:   ${c.idleTimeoutMs} ms   auth: ${c.auth}   env: ${Object.keys(c.env).join(", ") || "(none)"}`,
          `  sandbox:        bubblewrap ${r.sandbox.bwrap ? "on" : "OFF"}, cgroups ${r.sandbox.cgroups ?? "OFF"}`,
          `  sandbox mode:   ${r.sandbox.mode}`,
          ...r.sandbox.protectionsOff.map((x: string) => `  WARNING, protection off: ${x}`),
          ...(r.sandbox.warning ? [`  WARNING: ${r.sandbox.warning}`] : []),
        ].join("\n");
      });
    }),
  );

program
  .command("versions")
  .description("List a function's versions")
  .argument("<name>")
  .option("--json", "print JSON")
  .action(
    action(async (name: string, o: { json?: boolean }) => {
      const r = await new Client().json<any>("GET", `/api/v1/functions/${encodeURIComponent(name)}/versions`);
      out(Boolean(o.json), r, () =>
        table([
          ["VERSION", "LATEST", "HASH", "EXECUTOR", "SIZE", "CREATED"],
          ...r.versions.map((v: any) => [
            v.version,
            v.latest ? "*" : "",
            v.hash.slice(0, 12),
            v.executor,
            `${(v.sizeBytes / 1024).toFixed(1)} KiB`,
            when(v.createdAt),
          ]),
        ]),
      );
    }),
  );

program
  .command("rollback")
  .description("Point latest at an earlier version")
  .argument("<name>")
  .argument("<version>")
  .option("--json", "print JSON")
  .action(
    action(async (name: string, version: string, o: { json?: boolean }) => {
      const n = Number(version);
      if (!Number.isInteger(n) || n < 1)
        throw new NimbusError("NIMBUS_BAD_REQUEST", `<version> must be a version number, got '${version}'.`);
      const r = await new Client().json<any>(
        "POST",
        `/api/v1/functions/${encodeURIComponent(name)}/rollback`,
        { version: n },
      );
      out(Boolean(o.json), r, () => `${r.name}: latest now points at version ${r.latest}`);
    }),
  );

program
  .command("rm")
  .description("Delete a function with its versions, logs and records")
  .argument("<name>")
  .option("--json", "print JSON")
  .action(
    action(async (name: string, o: { json?: boolean }) => {
      const r = await new Client().json<any>("DELETE", `/api/v1/functions/${encodeURIComponent(name)}`);
      out(Boolean(o.json), r, () => `deleted ${r.deleted}`);
    }),
  );

function logLine(l: any): string {
  return `${when(l.t)} ${String(l.level).toUpperCase().padEnd(5)} v${l.version} ${l.invocationId ?? "-"}  ${l.msg}`;
}

program
  .command("logs")
  .description(
    "Show a function's logs; --follow streams new lines (Server-Sent Events; reconnects and resumes where it stopped)",
  )
  .argument("<name>")
  .option("-f, --follow", "keep streaming new lines")
  .option("-n, --limit <n>", "lines to show (with --follow: of the backlog first)", "100")
  .option("--invocation <id>", "only this invocation's lines")
  .addOption(
    new Option("--level <level>", "only lines of this level or above").choices([
      "debug",
      "info",
      "warn",
      "error",
    ]),
  )
  .option("--grep <text>", "only lines containing this text (case-insensitive)")
  .option("--since <when>", "only lines since: a period back (30s, 10m, 2h, 1d) or an ISO time")
  .option("--json", "print JSON (one line per log line with --follow)")
  .action(
    action(
      async (
        name: string,
        o: {
          follow?: boolean;
          limit: string;
          invocation?: string;
          level?: string;
          grep?: string;
          since?: string;
          json?: boolean;
        },
      ) => {
        const client = new Client();
        const q = new URLSearchParams({ limit: o.limit });
        if (o.invocation) q.set("invocation", o.invocation);
        if (o.level) q.set("level", o.level);
        if (o.grep) q.set("q", o.grep);
        if (o.since) q.set("since", String(sinceTime(o.since)));
        const path = `/api/v1/functions/${encodeURIComponent(name)}/logs`;
        if (!o.follow) {
          const r = await client.json<any>("GET", `${path}?${q}`);
          out(Boolean(o.json), r, () => r.lines.map(logLine).join("\n"));
          return;
        }
        q.set("follow", "1");
        let last: string | undefined;
        // A dropped stream (server restart, cut off as a slow reader) resumes from the last id.
        for (let attempt = 0; ; attempt++) {
          let res: Response;
          try {
            res = await client.raw("GET", `${path}?${q}`, {
              headers: { accept: "text/event-stream", ...(last ? { "last-event-id": last } : {}) },
            });
          } catch (err) {
            if (attempt >= 30) throw err;
            await new Promise((r) => setTimeout(r, 1000));
            continue;
          }
          if (!res.ok) throw fromBody(res.status, await res.json().catch(() => ({})));
          attempt = 0;
          try {
            for await (const ev of readSse(res.body as unknown as AsyncIterable<Uint8Array>)) {
              if (ev.event !== "log") continue;
              last = ev.id ?? last;
              process.stdout.write(`${o.json ? ev.data : logLine(JSON.parse(ev.data))}\n`);
            }
          } catch {}
          await new Promise((r) => setTimeout(r, 1000));
        }
      },
    ),
  );

/** `--since`: a period back from now (30s, 10m, 2h, 7d) or an ISO time, as ms since the epoch. */
function sinceTime(s: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(s);
  if (m) return Date.now() - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"];
  const t = Date.parse(s);
  if (Number.isNaN(t)) {
    throw new NimbusError(
      "NIMBUS_BAD_REQUEST",
      `--since must be a period (30s, 10m, 2h, 7d) or an ISO time like 2026-01-31T12:00:00Z, got '${s}'.`,
    );
  }
  return t;
}

function parseSince(s: string): number {
  const m = /^(\d+)(m|h|d)$/.exec(s);
  if (!m) throw new NimbusError("NIMBUS_BAD_REQUEST", `--since must look like 30m, 24h or 7d, got '${s}'.`);
  return Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "m" | "h" | "d"];
}

program
  .command("usage")
  .description("Requests, GB-seconds, CPU ms and cost per function for a period")
  .option("--since <period>", "how far back: 30m, 24h, 7d", "30d")
  .option("--json", "print JSON")
  .action(
    action(async (o: { since: string; json?: boolean }) => {
      const to = Date.now() + 1;
      const from = to - parseSince(o.since);
      const r = await new Client().json<any>("GET", `/api/v1/usage?from=${from}&to=${to}`);
      const usd = (n: number) => `$${n.toFixed(n < 0.01 ? 8 : 4)}`;
      out(Boolean(o.json), r, () =>
        [
          `Usage ${when(r.from)} → ${when(r.to)}, price plan ${r.pricePlan.name} ($${r.pricePlan.perRequest * 1e6}/M requests, $${r.pricePlan.perGbSecond}/GB-s)`,
          table([
            ["FUNCTION", "REQUESTS", "ERRORS", "REFUSED", "GB-S", "CPU MS", "BILLED MS", "COST"],
            ...r.functions.map((f: any) => [
              f.fn,
              f.requests,
              f.errors,
              f.refused,
              f.gbSeconds.toFixed(6),
              f.cpuMs.toFixed(1),
              f.billedMs,
              usd(f.cost),
            ]),
            [
              "TOTAL",
              r.total.requests,
              r.total.errors,
              r.total.refused,
              r.total.gbSeconds.toFixed(6),
              r.total.cpuMs.toFixed(1),
              r.total.billedMs,
              usd(r.total.cost),
            ],
          ]),
        ].join("\n"),
      );
    }),
  );

registerEventCommands(program, { out, table, action });
registerTopCommand(program, { out, table, action });
registerTriggerCommands(program, { out, table, action });
registerQueueCommands(program, { out, table, action });

await program.parseAsync(process.argv);
