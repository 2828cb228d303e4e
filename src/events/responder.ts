/**
 * A Responder that keeps a bounded prefix of the response (for an async invocation's
 * result) and resolves when the invocation ends.
 */
import type { NimbusError } from "../errors.ts";
import type { Responder } from "../invoker/invoker.ts";

/** What one attempt produced. */
export interface AttemptOutcome {
  ok: boolean;
  status: number;
  /** The first `keep` bytes of the body. */
  body: Buffer;
  bodyBytes: number;
  error?: { code: string; message: string };
}

/** Collects one attempt's response. */
export class CollectingResponder implements Responder {
  private status = 0;
  private readonly parts: Buffer[] = [];
  private kept = 0;
  private total = 0;
  private readonly keep: number;
  private resolveDone!: (o: AttemptOutcome) => void;
  /** Resolves once the invocation ended (response or error). */
  readonly done: Promise<AttemptOutcome>;

  /** @param keep body bytes kept for the result. @default 4096 */
  constructor(keep = 4096) {
    this.keep = keep;
    this.done = new Promise((r) => {
      this.resolveDone = r;
    });
  }

  head(status: number): void {
    this.status = status;
  }

  chunk(data: Buffer): void {
    this.total += data.length;
    if (this.kept < this.keep) {
      const part = data.subarray(0, this.keep - this.kept);
      this.parts.push(Buffer.from(part));
      this.kept += part.length;
    }
  }

  end(): void {
    // A fetch handler's 5xx is a failure too (the function said so); 4xx is the caller's problem.
    this.resolveDone({
      ok: this.status < 500,
      status: this.status,
      body: Buffer.concat(this.parts),
      bodyBytes: this.total,
    });
  }

  error(err: NimbusError): void {
    this.resolveDone({
      ok: false,
      status: err.status,
      body: Buffer.concat(this.parts),
      bodyBytes: this.total,
      error: { code: err.code, message: err.message },
    });
  }
}

/**
 * An attempt's outcome, or a timeout outcome once `ms` pass: an attempt never outlives its
 * lease (past it the message is someone else's), and its slot must come back even if the
 * invocation never reports an end.
 */
export async function outcomeWithin(done: Promise<AttemptOutcome>, ms: number): Promise<AttemptOutcome> {
  let guard: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      done,
      new Promise<AttemptOutcome>((r) => {
        guard = setTimeout(
          () =>
            r({
              ok: false,
              status: 504,
              body: Buffer.alloc(0),
              bodyBytes: 0,
              error: { code: "NIMBUS_TIMEOUT", message: "The attempt reported no outcome within its lease." },
            }),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(guard);
  }
}
