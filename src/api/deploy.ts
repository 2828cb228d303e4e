/**
 * Deploying a version: store the bundle, check it loads in a sandbox (with a handler and
 * valid config) before activating, then point `latest` at it. Identical code and config
 * gives back the existing version.
 */
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  checkFunctionName,
  DEFAULT_LIMITS,
  type FunctionConfig,
  type ServerLimits,
  validateConfig,
} from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { Executor, ExecutorKind } from "../executors/types.ts";
import type { Registry } from "../invoker/registry.ts";
import type { Store, VersionRecord } from "../store/types.ts";

/** What the CLI uploads. */
export interface DeployInput {
  name: string;
  /** The bundled ES module. */
  code: string;
  sourceMap?: string;
  /** Config from nimbus.json / CLI flags; overrides the inline `export const config`. */
  config?: Record<string, unknown>;
}

/** What a deploy reports. */
export interface DeployResult {
  version: VersionRecord;
  /** False when identical code and config matched an existing version. */
  created: boolean;
  checkMs: number;
}

/** Deploys functions. */
export class Deployer {
  private readonly store: Store;
  private readonly registry: Registry;
  private readonly executors: Partial<Record<ExecutorKind, Executor>>;
  private readonly dataDir: string;
  private readonly onActivated: (v: VersionRecord) => void;
  private readonly checkConfig: (c: FunctionConfig) => void;
  private readonly limits: ServerLimits;

  constructor(opts: {
    store: Store;
    registry: Registry;
    executors: Partial<Record<ExecutorKind, Executor>>;
    dataDir: string;
    onActivated: (v: VersionRecord) => void;
    /** Server-side checks of a valid config (e.g. the network policy against the ceiling). */
    checkConfig?: (c: FunctionConfig) => void;
    /** The server's maximums a config is held to. @default DEFAULT_LIMITS */
    limits?: ServerLimits;
  }) {
    this.checkConfig = opts.checkConfig ?? (() => {});
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.store = opts.store;
    this.registry = opts.registry;
    this.executors = opts.executors;
    this.dataDir = opts.dataDir;
    this.onActivated = opts.onActivated;
  }

  async deploy(tenant: string, input: DeployInput): Promise<DeployResult> {
    checkFunctionName(input.name);
    if (typeof input.code !== "string" || input.code.length === 0) {
      throw new NimbusError(
        "NIMBUS_BAD_REQUEST",
        "'code' must be the bundled module's source (a non-empty string).",
      );
    }
    // Validate what the manifest says before spending a sandbox on it.
    const manifest = input.config ?? {};
    this.checkConfig(validateConfig(manifest, this.limits));
    const hash = createHash("sha256")
      .update(input.code)
      .update("\0")
      .update(input.sourceMap ?? "")
      .update("\0")
      .update(JSON.stringify(manifest))
      .digest("hex");
    const existing = await this.store.findVersionByHash(tenant, input.name, hash);
    if (existing) {
      const fn = await this.store.getFunction(tenant, input.name);
      if (fn && fn.latest !== existing.version)
        await this.store.setLatest(tenant, input.name, existing.version);
      await this.registry.refresh(tenant, input.name);
      this.onActivated(existing);
      return { version: existing, created: false, checkMs: 0 };
    }
    const codeDir = join(this.dataDir, "code", tenant, input.name, hash.slice(0, 32));
    mkdirSync(codeDir, { recursive: true });
    let code = input.code;
    if (input.sourceMap && !/\/\/# sourceMappingURL=/.test(code))
      code += "\n//# sourceMappingURL=index.mjs.map\n";
    writeFileSync(join(codeDir, "index.mjs"), code);
    if (input.sourceMap) writeFileSync(join(codeDir, "index.mjs.map"), input.sourceMap);

    const preliminary = validateConfig(manifest, this.limits);
    const executor = this.executors[preliminary.executor];
    if (!executor) {
      throw new NimbusError(
        "NIMBUS_BAD_CONFIG",
        `config.executor: '${preliminary.executor}' is not available on this server.`,
      );
    }
    const t0 = performance.now();
    const loaded = await executor.check({
      functionName: input.name,
      tenant,
      version: 0,
      codeDir,
      // The function's own memory size: the check runs as an instance will (and takes a
      // pre-started runtime of that size).
      memoryMB: preliminary.memory,
      timeoutMs: preliminary.timeoutMs,
      env: preliminary.env,
    });
    const checkMs = performance.now() - t0;
    if (!loaded.ok) {
      throw new NimbusError(
        "NIMBUS_DEPLOY_CHECK_FAILED",
        `The new version failed to load, so it was not activated (the previous version keeps serving): ${loaded.error?.message}`,
        { details: { stack: loaded.error?.stack, location: firstLocation(loaded.error?.stack) } },
      );
    }
    let config: FunctionConfig;
    const inline = loaded.config;
    if (inline !== undefined && (typeof inline !== "object" || inline === null || Array.isArray(inline))) {
      throw new NimbusError("NIMBUS_BAD_CONFIG", "export const config must be an object.");
    }
    config = validateConfig({ ...(inline as Record<string, unknown> | undefined), ...manifest }, this.limits);
    this.checkConfig(config);
    if (loaded.node?.length && config.executor === "isolate" && !config.compatibility?.includes("nodejs")) {
      // The bundle carries the Node subset although the function did not opt in.
      throw new NimbusError(
        "NIMBUS_DEPLOY_CHECK_FAILED",
        `The function imports '${loaded.node[0]}', a Node.js built-in that the isolate executor provides only to functions that opt in: add "compatibility": ["nodejs"] to its config in nimbus.json, or set executor: "process" to use the full Node.js API.`,
      );
    }
    if (config.executor !== preliminary.executor) {
      // The inline config chose another executor: check the bundle there too.
      const other = this.executors[config.executor];
      if (!other)
        throw new NimbusError(
          "NIMBUS_BAD_CONFIG",
          `config.executor: '${config.executor}' is not available on this server.`,
        );
      const again = await other.check({
        functionName: input.name,
        tenant,
        version: 0,
        codeDir,
        memoryMB: config.memory,
        timeoutMs: config.timeoutMs,
        env: config.env,
      });
      if (!again.ok) {
        throw new NimbusError(
          "NIMBUS_DEPLOY_CHECK_FAILED",
          `The new version failed to load: ${again.error?.message}`,
          {
            details: { stack: again.error?.stack, location: firstLocation(again.error?.stack) },
          },
        );
      }
      config = validateConfig(
        { ...(inline as Record<string, unknown> | undefined), ...manifest },
        this.limits,
      );
    }
    const version = await this.store.addVersion({
      tenant,
      name: input.name,
      hash,
      executor: config.executor,
      config,
      codeDir,
      sizeBytes: Buffer.byteLength(code),
      createdAt: Date.now(),
    });
    await this.registry.refresh(tenant, input.name);
    this.onActivated(version);
    return { version, created: true, checkMs };
  }
}

/** The first `file:line:col` of a stack that is the user's code (not the runtime's). */
export function firstLocation(stack: string | undefined): string | undefined {
  if (!stack) return undefined;
  for (const line of stack.split("\n")) {
    const m = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?\s*$/.exec(line.trim());
    if (m && !m[1]!.includes("/nimbus/runtime/") && !m[1]!.startsWith("node:"))
      return `${m[1]}:${m[2]}:${m[3]}`;
  }
  return undefined;
}
