/**
 * AWS Lambda adapter: API Gateway HTTP API payload format 2.0 events in, Lambda proxy
 * results out. Plain JavaScript with no Node APIs, so it runs in a process or an isolate.
 */

/** The request as the adapter needs it. */
export interface LambdaRequestInput {
  invocationId: string;
  method: string;
  /** Absolute URL as the function sees it. */
  url: string;
  headers: [string, string][];
  body: Uint8Array;
  sourceIp: string;
  functionName: string;
  /** Time of the request, ms since the epoch. */
  time: number;
}

/** An API Gateway HTTP API v2.0 event. */
export interface HttpApiEventV2 {
  version: "2.0";
  routeKey: "$default";
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: string;
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: "$default";
    stage: "$default";
    time: string;
    timeEpoch: number;
  };
  body?: string;
  isBase64Encoded: boolean;
  pathParameters?: Record<string, string>;
  stageVariables?: Record<string, string>;
}

/** A response in the platform's neutral form. */
export interface AdaptedResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

const TEXT_TYPES =
  /^(text\/|application\/(json|xml|javascript|x-www-form-urlencoded|graphql|[a-z0-9.+-]*\+(json|xml)))/i;
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** Base64-encodes bytes (no Node Buffer: runs in isolates too). */
export function toBase64(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}==`;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += `${B64[n >> 18]!}${B64[(n >> 12) & 63]!}${B64[(n >> 6) & 63]!}=`;
  }
  return out;
}

/** Decodes base64 (standard or URL alphabet, padding optional) to bytes. */
export function fromBase64(text: string): Uint8Array {
  const clean = text.replace(/[\s=]/g, "").replace(/-/g, "+").replace(/_/g, "/");
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let o = 0;
  for (let i = 0; i < clean.length; i++) {
    const c = clean.charCodeAt(i);
    const v = c < 128 ? B64_INDEX[c]! : -1;
    if (v < 0) throw new TypeError("Invalid base64 in the Lambda response body.");
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (value >> bits) & 0xff;
    }
  }
  return out.subarray(0, o);
}

/** Builds the HTTP API v2.0 event for one request. */
export function toLambdaEvent(input: LambdaRequestInput): HttpApiEventV2 {
  const url = new URL(input.url);
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  let contentType = "";
  for (const [name, value] of input.headers) {
    if (name === "cookie") {
      for (const c of value.split(";")) if (c.trim()) cookies.push(c.trim());
      continue;
    }
    // API Gateway joins repeated headers with commas.
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
    if (name === "content-type") contentType = value;
  }
  const rawQueryString = url.search.length > 1 ? url.search.slice(1) : "";
  let queryStringParameters: Record<string, string> | undefined;
  if (rawQueryString) {
    queryStringParameters = {};
    for (const [k, v] of url.searchParams) {
      queryStringParameters[k] =
        queryStringParameters[k] === undefined ? v : `${queryStringParameters[k]},${v}`;
    }
  }
  const date = new Date(input.time);
  const event: HttpApiEventV2 = {
    version: "2.0",
    routeKey: "$default",
    rawPath: decodeURIComponent(url.pathname),
    rawQueryString,
    headers,
    requestContext: {
      accountId: "nimbus",
      apiId: input.functionName,
      domainName: url.host,
      domainPrefix: input.functionName,
      http: {
        method: input.method,
        path: decodeURIComponent(url.pathname),
        protocol: "HTTP/1.1",
        sourceIp: input.sourceIp,
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: input.invocationId,
      routeKey: "$default",
      stage: "$default",
      time: date.toISOString(),
      timeEpoch: input.time,
    },
    isBase64Encoded: false,
  };
  if (cookies.length > 0) event.cookies = cookies;
  if (queryStringParameters) event.queryStringParameters = queryStringParameters;
  if (input.body.byteLength > 0) {
    if (TEXT_TYPES.test(contentType)) {
      event.body = new TextDecoder().decode(input.body);
    } else {
      event.body = toBase64(input.body);
      event.isBase64Encoded = true;
    }
  }
  return event;
}

/**
 * Converts what a Lambda handler returned to a response, as API Gateway's HTTP API does:
 * an object with `statusCode` is a proxy result; anything else is the JSON body of a 200.
 */
export function fromLambdaResult(result: unknown): AdaptedResponse {
  const enc = new TextEncoder();
  if (result !== null && typeof result === "object" && "statusCode" in result) {
    const r = result as {
      statusCode: unknown;
      headers?: Record<string, unknown>;
      multiValueHeaders?: Record<string, unknown[]>;
      body?: unknown;
      isBase64Encoded?: boolean;
      cookies?: unknown[];
    };
    const status = Number(r.statusCode);
    // A final 1xx would leave the caller's connection waiting for another response.
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new TypeError(
        `statusCode must be an integer from 200 to 599, got ${JSON.stringify(r.statusCode)}.`,
      );
    }
    const headers: [string, string][] = [];
    for (const [k, v] of Object.entries(r.headers ?? {})) headers.push([k.toLowerCase(), String(v)]);
    for (const [k, vs] of Object.entries(r.multiValueHeaders ?? {})) {
      for (const v of vs) headers.push([k.toLowerCase(), String(v)]);
    }
    for (const c of r.cookies ?? []) headers.push(["set-cookie", String(c)]);
    // What the platform would refuse (and stop the instance for) is the function's bad response.
    for (const [k, v] of headers) {
      if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(k) || !/^[\t\x20-\x7e\x80-\xff]*$/.test(v)) {
        throw new TypeError(`invalid response header ${JSON.stringify(k).slice(0, 80)}.`);
      }
    }
    let body: Uint8Array;
    if (r.body === undefined || r.body === null) body = new Uint8Array(0);
    else if (typeof r.body !== "string") {
      throw new TypeError(`body must be a string (JSON.stringify objects), got ${typeof r.body}.`);
    } else body = r.isBase64Encoded ? fromBase64(r.body) : enc.encode(r.body);
    return { status, headers, body };
  }
  if (result === undefined) return { status: 200, headers: [], body: new Uint8Array(0) };
  const text = typeof result === "string" ? result : JSON.stringify(result);
  return { status: 200, headers: [["content-type", "application/json"]], body: enc.encode(text) };
}

/**
 * The `event` a Lambda handler receives for a JSON event payload (an async invoke through
 * the API, a schedule, a queue batch): the parsed JSON, or the text when it is not JSON.
 */
export function fromEventPayload(body: Uint8Array): unknown {
  const text = new TextDecoder().decode(body);
  if (text === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
