/**
 * The platform's side of response flow control, shared by both executors: counts the body
 * bytes an instance sent for one invocation that have not yet left the platform, and grants
 * credit back (a CREDIT frame) as the caller reads them.
 */
import { FLOW_WINDOW } from "../runtime/protocol.ts";

/**
 * Credit is returned in steps of at least this many bytes, so a response streamed in small
 * chunks does not cost a CREDIT frame per chunk. It must stay below the window: with at most
 * a step held back, an instance waiting for credit always has more than a step in flight,
 * whose consumption releases the next grant.
 */
const GRANT_STEP = 256 * 1024;

/** One invocation's response flow: outstanding bytes and credit to hand back. */
export class ResponseFlow {
  /** Bytes received from the instance that it has not been credited for yet. */
  private outstanding = 0;
  /** Bytes passed on to the caller but not yet granted back. */
  private held = 0;
  private closed = false;
  private readonly grant: (bytes: number) => void;
  private readonly window: number;

  /**
   * @param grant sends a CREDIT frame of this many bytes to the instance
   * @param window the instance's window, bytes. @default FLOW_WINDOW
   */
  constructor(grant: (bytes: number) => void, window = FLOW_WINDOW) {
    this.grant = grant;
    this.window = window;
  }

  /**
   * Counts body bytes received from the instance; false when it overran its window (a
   * broken or hostile instance, to be stopped).
   */
  received(bytes: number): boolean {
    this.outstanding += bytes;
    return this.outstanding <= this.window;
  }

  /** Body bytes received and not yet credited back (for tests and stats). */
  get inFlight(): number {
    return this.outstanding;
  }

  /** Returns a callback that credits `bytes` back once called (at most once). */
  consumer(bytes: number): () => void {
    let called = false;
    return () => {
      if (called) return;
      called = true;
      this.consumed(bytes);
    };
  }

  private consumed(bytes: number): void {
    if (this.closed) return;
    this.held += bytes;
    if (this.held < GRANT_STEP && this.held < this.outstanding) return;
    const n = this.held;
    this.held = 0;
    this.outstanding -= n;
    this.grant(n);
  }

  /** The invocation is over: no more credit goes out. */
  close(): void {
    this.closed = true;
  }
}
