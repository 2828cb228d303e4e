/**
 * The CLI's client of the control API. Finds the server (NIMBUS_URL, default
 * http://127.0.0.1:7070) and the key (NIMBUS_TOKEN, else <data dir>/admin.key).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ADMIN_KEY_FILE } from "../api/auth.ts";
import { type ErrorCode, NimbusError } from "../errors.ts";

/** Where the CLI connects and with which key. */
export interface ClientConfig {
  url: string;
  token: string | undefined;
}

/** Reads NIMBUS_URL / NIMBUS_TOKEN, falling back to the local data directory's admin key. */
export function clientConfig(): ClientConfig {
  const url = (process.env.NIMBUS_URL ?? `http://127.0.0.1:${process.env.NIMBUS_PORT ?? 7070}`).replace(
    /\/$/,
    "",
  );
  let token = process.env.NIMBUS_TOKEN;
  if (!token) {
    const file = join(resolve(process.env.NIMBUS_HOME ?? ".nimbus"), ADMIN_KEY_FILE);
    if (existsSync(file)) token = readFileSync(file, "utf8").trim();
  }
  return { url, token };
}

/** A thin JSON client. */
export class Client {
  readonly config: ClientConfig;

  constructor(config = clientConfig()) {
    this.config = config;
  }

  /** Raw request; returns the fetch Response (errors are not thrown). */
  async raw(
    method: string,
    path: string,
    init: { body?: BodyInit; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.config.token) headers.authorization = `Bearer ${this.config.token}`;
    try {
      return await fetch(`${this.config.url}${path}`, {
        method,
        headers,
        body: init.body,
        duplex: "half",
      } as RequestInit);
    } catch (err) {
      throw new NimbusError(
        "NIMBUS_UNAVAILABLE",
        `Cannot reach the Nimbus server at ${this.config.url} (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}). Start it with 'npm start' (or 'nimbus serve'), or set NIMBUS_URL.`,
      );
    }
  }

  /** JSON request; throws NimbusError with the server's code and message on failure. */
  async json<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.raw(method, path, {
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { "content-type": "application/json" },
    });
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { error: { code: "NIMBUS_INTERNAL", message: text } };
    }
    if (!res.ok) throw fromBody(res.status, parsed);
    return parsed as T;
  }
}

/** Rebuilds a NimbusError from an API error body. */
export function fromBody(status: number, body: any): NimbusError {
  const code = (body?.error?.code ?? "NIMBUS_INTERNAL") as ErrorCode;
  try {
    return new NimbusError(code, body?.error?.message ?? `HTTP ${status}`, { details: body?.error?.details });
  } catch {
    return new NimbusError("NIMBUS_INTERNAL", body?.error?.message ?? `HTTP ${status}`);
  }
}
