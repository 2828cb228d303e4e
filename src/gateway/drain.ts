/**
 * Passes response bytes to an HTTP response and says when they have left the process: the
 * hook that turns a slow reader into backpressure on the function (flow control).
 */
import type { ServerResponse } from "node:http";

/**
 * Writes chunks to a `ServerResponse` and calls each chunk's `consumed` callback once the
 * response's buffer drained past it (at once when `write` returns true, else on `drain`), or
 * when the response closed (a caller that went away must not leave the function paused).
 */
export class DrainWriter {
  private readonly res: ServerResponse;
  private waiting: (() => void)[] = [];
  private closed = false;

  constructor(res: ServerResponse) {
    this.res = res;
    // Made lazily by the gateway's responder: the response may have closed already.
    this.closed = res.closed;
    res.on("drain", this.release);
    res.once("close", () => {
      this.closed = true;
      this.release();
    });
  }

  /** Writes `data`; `consumed` runs once it left the response's buffer. */
  write(data: Buffer, consumed: () => void): void {
    if (this.closed) {
      consumed();
      return;
    }
    if (this.res.write(data) && this.waiting.length === 0) consumed();
    else this.waiting.push(consumed);
  }

  /** Adds a callback to run at the next drain (bytes already handed to the response). */
  after(consumed: () => void): void {
    if (this.closed || !this.res.writableNeedDrain) consumed();
    else this.waiting.push(consumed);
  }

  private readonly release = (): void => {
    const list = this.waiting;
    this.waiting = [];
    for (const cb of list) cb();
  };
}
