/**
 * The one catalogue of Nimbus error codes. Every error a user or a caller can see has a
 * stable code here, an HTTP status, and a class: `user` (the caller or the function's code
 * can fix it) or `system` (the platform failed). Messages say what to do next.
 */

/** Whether the caller/function author can fix the error, or the platform failed. */
export type ErrorClass = "user" | "system";

/** One entry of the catalogue. */
export interface ErrorSpec {
  readonly status: number;
  readonly class: ErrorClass;
  /** The message used when none is given; says what to do next. */
  readonly message: string;
}

/** Every stable error code Nimbus produces. */
export const ERROR_CATALOGUE = {
  NIMBUS_BAD_REQUEST: { status: 400, class: "user", message: "The request is malformed." },
  NIMBUS_BAD_FUNCTION_NAME: {
    status: 400,
    class: "user",
    message:
      "Function names must match ^[a-z][a-z0-9-]{0,62}$ (lowercase letter first, then letters, digits, dashes).",
  },
  NIMBUS_BAD_CONFIG: { status: 400, class: "user", message: "The function's configuration is invalid." },
  NIMBUS_CONFIG_OVER_LIMIT: {
    status: 400,
    class: "user",
    message:
      "The function's configuration asks for more than this server allows; lower it, or have the operator raise the maximum.",
  },
  NIMBUS_BUILD_FAILED: { status: 400, class: "user", message: "Bundling the function failed." },
  NIMBUS_DEPLOY_CHECK_FAILED: {
    status: 400,
    class: "user",
    message: "The new version failed its load check; the previous version keeps serving.",
  },
  NIMBUS_UNAUTHORIZED: {
    status: 401,
    class: "user",
    message: "A valid API key is required: send 'Authorization: Bearer <key>'.",
  },
  NIMBUS_FORBIDDEN: { status: 403, class: "user", message: "This API key lacks the scope for this action." },
  NIMBUS_FN_NOT_FOUND: {
    status: 404,
    class: "user",
    message: "No such function. List deployed functions with 'nimbus ls'.",
  },
  NIMBUS_VERSION_NOT_FOUND: {
    status: 404,
    class: "user",
    message: "No such version of this function. List them with 'nimbus versions <name>'.",
  },
  NIMBUS_NOT_FOUND: { status: 404, class: "user", message: "Not found." },
  NIMBUS_PAYLOAD_TOO_LARGE: {
    status: 413,
    class: "user",
    message: "The request body exceeds the 6 MB limit for synchronous invocations.",
  },
  NIMBUS_THROTTLED: {
    status: 429,
    class: "user",
    message:
      "The function is at its concurrency limit and its queue is full; retry after the indicated delay.",
  },
  NIMBUS_RESERVED_CONCURRENCY_EXCEEDED: {
    status: 429,
    class: "user",
    message:
      "The function is at its reserved concurrency and its queue is full; retry after the indicated delay or raise reservedConcurrency.",
  },
  NIMBUS_MACHINE_CONCURRENCY_EXCEEDED: {
    status: 429,
    class: "system",
    message:
      "This machine is at its limit of invocations running at once and the queue is full; retry after the indicated delay.",
  },
  NIMBUS_MACHINE_MEMORY_EXHAUSTED: {
    status: 429,
    class: "system",
    message:
      "No memory is left on this machine for another instance (every instance is busy); retry after the indicated delay.",
  },
  NIMBUS_QUEUE_FULL: {
    status: 429,
    class: "user",
    message:
      "The function's async event queue is full (its 'maxQueuedEvents' limit); retry after the indicated delay, or let the queue drain (see 'nimbus invocations <name>').",
  },
  NIMBUS_INVOCATION_NOT_FOUND: {
    status: 404,
    class: "user",
    message:
      "No async invocation with this id (succeeded ones are kept for 24 hours). List recent ones with 'nimbus invocations <name>'.",
  },
  NIMBUS_QUEUE_UNAVAILABLE: {
    status: 503,
    class: "system",
    message:
      "The event could not be stored durably (the queue's disk failed); nothing was accepted. Retry shortly.",
  },
  NIMBUS_QUEUE_NOT_FOUND: {
    status: 404,
    class: "user",
    message:
      "No queue with this name. Create it with 'nimbus queue create <name>'; list them with 'nimbus queue ls'.",
  },
  NIMBUS_QUEUE_EXISTS: {
    status: 409,
    class: "user",
    message: "A queue with this name exists already. See it with 'nimbus queue info <name>'.",
  },
  NIMBUS_QUEUE_BACKLOG_FULL: {
    status: 429,
    class: "user",
    message:
      "The queue holds its 'maxBacklog' of undelivered messages; retry after the indicated delay, let its consumer drain it, or raise --max-backlog.",
  },
  NIMBUS_QUEUE_NOT_BOUND: {
    status: 403,
    class: "user",
    message: "The function has no producer binding to this queue (config.queues.producers).",
  },
  NIMBUS_FUNCTION_ERROR: {
    status: 500,
    class: "user",
    message: "The function threw an error. See 'nimbus logs <name>' for the stack trace.",
  },
  NIMBUS_BAD_RESPONSE: {
    status: 502,
    class: "user",
    message: "The function returned a value that is not a valid response.",
  },
  NIMBUS_MEMORY_LIMIT: {
    status: 502,
    class: "user",
    message: "The function exceeded its memory limit and was stopped. Raise 'memory' in its config.",
  },
  NIMBUS_INSTANCE_CRASHED: {
    status: 502,
    class: "user",
    message: "The function's instance exited during the invocation; the next request gets a fresh instance.",
  },
  NIMBUS_INSTANCE_PROTOCOL: {
    status: 502,
    class: "user",
    message:
      "The function's instance sent the platform malformed data and was stopped; the next request gets a fresh instance. A function must not write to the runtime's control channel (file descriptor 3).",
  },
  NIMBUS_TIMEOUT: {
    status: 504,
    class: "user",
    message: "The function did not respond within its timeout. Raise 'timeout' in its config.",
  },
  NIMBUS_CPU_LIMIT: {
    status: 504,
    class: "user",
    message: "The function exceeded its CPU-time limit ('cpuMs').",
  },
  /** Raised inside the function (a QuotaExceededError from crypto.subtle), not answered by the platform. */
  NIMBUS_CRYPTO_KEY_LIMIT: {
    status: 500,
    class: "user",
    message:
      "The function holds the most CryptoKeys one isolate may (10,000); import keys once at module level instead of per request.",
  },
  NIMBUS_UNAVAILABLE: {
    status: 503,
    class: "system",
    message: "The platform is shutting down or cannot start an instance right now; retry shortly.",
  },
  NIMBUS_SANDBOX_REQUIRED: {
    status: 500,
    class: "user",
    message:
      "Without the sandbox (bubblewrap + cgroups) Nimbus runs only for local development on a loopback address. Install it (apt-get install bubblewrap), or bind to 127.0.0.1, or pass --insecure-no-sandbox.",
  },
  NIMBUS_OVERLOADED: {
    status: 503,
    class: "system",
    message:
      "The server is at its limit of open connections or of request bytes held in memory; retry after the indicated delay.",
  },
  NIMBUS_INTERNAL: { status: 500, class: "system", message: "Internal platform error." },
} as const satisfies Record<string, ErrorSpec>;

/** A stable Nimbus error code. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** The JSON body of every error answer: `{ error: { code, message, details? } }`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

/**
 * The one error class for every catalogued condition. Carries its code, status and class,
 * optional structured details, and the original `cause`.
 *
 * @example
 * throw new NimbusError("NIMBUS_FN_NOT_FOUND", `No function named '${name}'.`);
 */
export class NimbusError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errorClass: ErrorClass;
  readonly details: unknown;
  /** Extra response headers (e.g. `retry-after` on 429). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message?: string,
    options: { cause?: unknown; details?: unknown; headers?: Record<string, string> } = {},
  ) {
    const spec = ERROR_CATALOGUE[code];
    super(message ?? spec.message, { cause: options.cause });
    this.name = "NimbusError";
    this.code = code;
    this.status = spec.status;
    this.errorClass = spec.class;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }

  /** The JSON body sent to callers. */
  toBody(): ErrorBody {
    const body: ErrorBody = { error: { code: this.code, message: this.message } };
    if (this.details !== undefined) body.error.details = this.details;
    return body;
  }
}
