/**
 * Server-wide caps on what callers can make the gateway hold: open connections and request
 * body bytes buffered in memory. Past either, the caller gets a catalogued 503
 * (NIMBUS_OVERLOADED) with `Retry-After` instead of the server running out of memory or
 * file descriptors.
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { NimbusError } from "../errors.ts";

/** Caps of the gateway. */
export interface AdmissionOptions {
  /**
   * Connections open at once (data plane and control API together); past it a new
   * connection is answered 503 and closed.
   * @default 16384
   */
  maxConnections?: number;
  /**
   * Request body bytes all requests together may hold in memory while they wait for and are
   * handed to an instance; past it a request is answered 503.
   * @default 268435456 (256 MB: ~42 bodies of the 6 MB maximum)
   */
  maxBufferedBodyBytes?: number;
  /** Seconds a refused caller is told to wait (`Retry-After`). @default 1 */
  retryAfterSeconds?: number;
}

/** Counts connections and buffered body bytes against their caps. */
export class Admission {
  readonly maxConnections: number;
  readonly maxBufferedBodyBytes: number;
  private readonly retryAfter: number;
  private open = 0;
  /** Connections refused at the cap since start (metrics). */
  refusedConnections = 0;
  private buffered = 0;
  private readonly refusedSockets = new WeakSet<Socket>();

  constructor(o: AdmissionOptions = {}) {
    this.maxConnections = o.maxConnections ?? 16384;
    this.maxBufferedBodyBytes = o.maxBufferedBodyBytes ?? 256 * 1024 * 1024;
    this.retryAfter = o.retryAfterSeconds ?? 1;
  }

  /** Connections open now. */
  get connections(): number {
    return this.open;
  }

  /** Request body bytes held now. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The 503 a refused caller gets. */
  overloaded(what: string): NimbusError {
    return new NimbusError(
      "NIMBUS_OVERLOADED",
      `The server is at its limit of ${what}; retry after ${this.retryAfter} s.`,
      { headers: { "retry-after": String(this.retryAfter) } },
    );
  }

  /** Counts the server's connections; one past the cap is answered 503 and closed at once. */
  attach(server: Server): void {
    server.on("connection", (socket: Socket) => {
      if (this.open >= this.maxConnections) {
        this.refusedSockets.add(socket);
        this.refusedConnections++;
        const err = this.overloaded(`${this.maxConnections} open connections`);
        const body = JSON.stringify(err.toBody());
        socket.on("error", () => {});
        // Answered before the request is read, so no request is parsed or buffered for it.
        socket.end(
          `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nretry-after: ${this.retryAfter}\r\nconnection: close\r\n\r\n${body}`,
        );
        socket.setTimeout(5000, () => socket.destroy());
        return;
      }
      this.open++;
      socket.once("close", () => {
        this.open--;
      });
    });
  }

  /** Whether this connection was refused (its requests must not be served). */
  refused(socket: Socket): boolean {
    return this.refusedSockets.has(socket);
  }

  /** Takes `bytes` of the body budget; false (nothing taken) when it would pass the cap. */
  reserve(bytes: number): boolean {
    if (this.buffered + bytes > this.maxBufferedBodyBytes) return false;
    this.buffered += bytes;
    return true;
  }

  /** Gives body budget back. */
  release(bytes: number): void {
    this.buffered = Math.max(0, this.buffered - bytes);
  }
}
