/**
 * Dashboard sessions: the login form posts a key; the server keeps the key's record in a
 * session and gives the browser only an opaque id in an HttpOnly, SameSite=Strict cookie
 * (the key never travels again, and never in a URL). Each session has a CSRF token that
 * state-changing forms (logout) must echo. Bounded: at most `max` sessions, oldest evicted.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { ApiKeyRecord } from "../store/types.ts";

/** The session cookie's name. */
export const SESSION_COOKIE = "nimbus_session";

/** One logged-in browser. */
export interface Session {
  id: string;
  key: ApiKeyRecord;
  csrf: string;
  expires: number;
}

/** The server-side session table. */
export class Sessions {
  private readonly byId = new Map<string, Session>();
  private readonly ttlMs: number;
  private readonly max: number;

  /**
   * @param ttlMs how long a session lasts. @default 43200000 (12 h)
   * @param max sessions kept at once. @default 1000
   */
  constructor(ttlMs = 12 * 3_600_000, max = 1000) {
    this.ttlMs = ttlMs;
    this.max = max;
  }

  /** Opens a session for a verified key. */
  create(key: ApiKeyRecord, now = Date.now()): Session {
    if (this.byId.size >= this.max) {
      // Maps iterate in insertion order: the first is the oldest.
      const oldest = this.byId.keys().next().value;
      if (oldest !== undefined) this.byId.delete(oldest);
    }
    const s: Session = {
      id: randomBytes(32).toString("base64url"),
      key,
      csrf: randomBytes(24).toString("base64url"),
      expires: now + this.ttlMs,
    };
    this.byId.set(s.id, s);
    return s;
  }

  /** The live session named by a Cookie header, if any. */
  fromCookie(header: string | undefined, now = Date.now()): Session | undefined {
    const id = cookieValue(header, SESSION_COOKIE);
    if (!id) return undefined;
    const s = this.byId.get(id);
    if (!s) return undefined;
    if (s.expires <= now) {
      this.byId.delete(id);
      return undefined;
    }
    return s;
  }

  /** Ends a session. */
  delete(id: string): void {
    this.byId.delete(id);
  }

  /** Sessions open now. */
  get size(): number {
    return this.byId.size;
  }

  /** The Set-Cookie value for a session (or one that clears the cookie). */
  cookie(s: Session | undefined, secure: boolean): string {
    const attrs = `Path=/dashboard; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`;
    return s
      ? `${SESSION_COOKIE}=${s.id}; ${attrs}; Max-Age=${Math.floor(this.ttlMs / 1000)}`
      : `${SESSION_COOKIE}=; ${attrs}; Max-Age=0`;
  }
}

/** One cookie's value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** Compares two tokens in constant time. */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
