/**
 * fast-check arbitraries of frames an attacker would send the platform: well-formed frames
 * with mutated meta, frames of unknown or platform-only types, broken length prefixes, and
 * raw bytes. Shared by the frame tests (pure guard, process executor, isolate host).
 */
import fc from "fast-check";
import { TI } from "../../src/runtime/isolate/frames.ts";
import { MAX_LOG_LINE, T } from "../../src/runtime/protocol.ts";

/** An id the sender replaces with the id of the invocation it is serving. */
export const CURRENT_ID = 0xffffffff;

/** One frame as bytes, and where in it the current invocation's id goes (if anywhere). */
export interface FuzzFrame {
  bytes: Buffer;
  /** Offsets (within `bytes`) of u32 ids to set to the current invocation's id. */
  idAt: number[];
}

/** Encodes a frame the way the protocol does, with an optional lie in the meta length. */
export function rawFrame(
  type: number,
  id: number,
  metaText: string,
  payload: Buffer,
  metaLenDelta = 0,
): Buffer {
  const meta = Buffer.from(metaText);
  const head = Buffer.alloc(13);
  head.writeUInt32LE(9 + meta.length + payload.length, 0);
  head.writeUInt8(type & 0xff, 4);
  head.writeUInt32LE(id >>> 0, 5);
  head.writeUInt32LE(Math.max(0, meta.length + metaLenDelta) >>> 0, 9);
  return Buffer.concat([head, meta, payload]);
}

const weirdString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("1\r\nset-cookie: stolen=1", "a\nb", "nul\0", "€", "\t ok", "x".repeat(5000), ""),
);
const headerName = fc.oneof(
  fc.constantFrom("content-type", "x-ok", "X-Nimbus-Version", "x-nimbus-invocation-id", "set-cookie"),
  fc.constantFrom("bad name", "", "x:y", "ü", "a\r\nb", "content-length", "transfer-encoding"),
  fc.stringMatching(/^[a-z-]{1,20}$/),
);
const header = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(headerName, weirdString) },
  { weight: 1, arbitrary: fc.jsonValue() },
);
const status = fc.oneof(
  fc.constantFrom(200, 204, 302, 404, 500, 599),
  fc.constantFrom(42, 0, -1, 99, 100, 101, 199, 600, 1000, 200.5, Number.NaN),
  fc.integer({ min: -10, max: 2000 }),
  fc.jsonValue(),
);
const headMeta = fc.record({
  status,
  headers: fc.oneof(
    { weight: 4, arbitrary: fc.array(header, { maxLength: 8 }) },
    { weight: 1, arbitrary: fc.constantFrom("x", null, { a: 1 }, Array(101).fill(["x-a", "1"])) },
    { weight: 1, arbitrary: fc.jsonValue() },
  ),
});
const number = fc.oneof(fc.double({ noNaN: false }), fc.constantFrom(0, 1, 5, -1, 1e308), fc.jsonValue());
const logMeta = fc.record(
  {
    level: fc.oneof(fc.constantFrom("debug", "info", "warn", "error"), fc.jsonValue()),
    t: number,
    msg: fc.oneof(
      { weight: 3, arbitrary: fc.string({ maxLength: 100 }) },
      { weight: 1, arbitrary: fc.constant("m".repeat(MAX_LOG_LINE + 10)) },
      { weight: 1, arbitrary: fc.jsonValue() },
    ),
    slot: fc.oneof(fc.constant(undefined), fc.nat(5), fc.jsonValue()),
  },
  { requiredKeys: [] },
);
const errorMeta = fc.record(
  {
    code: fc.oneof(
      fc.constantFrom("NIMBUS_FUNCTION_ERROR", "NIMBUS_BAD_RESPONSE"),
      fc.constantFrom("NIMBUS_INTERNAL", "NIMBUS_UNAUTHORIZED", "NOPE", "constructor", "__proto__"),
      fc.jsonValue(),
    ),
    message: fc.oneof(fc.string({ maxLength: 50 }), fc.jsonValue()),
    stack: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 50 }), fc.jsonValue()),
    cpuMs: number,
  },
  { requiredKeys: [] },
);
const endMeta = fc.record(
  { cpuMs: number, pending: fc.oneof(fc.boolean(), fc.jsonValue()) },
  { requiredKeys: [] },
);
const loadedMeta = fc.record(
  {
    ok: fc.oneof(fc.boolean(), fc.jsonValue()),
    shape: fc.oneof(fc.constantFrom("fetch-object", "lambda", "nope"), fc.jsonValue()),
    loadMs: number,
    config: fc.jsonValue(),
    error: fc.oneof(fc.record({ message: weirdString }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);
const goneMeta = fc.record(
  {
    code: fc.oneof(
      fc.constantFrom("NIMBUS_MEMORY_LIMIT", "NIMBUS_CPU_LIMIT", "NIMBUS_INTERNAL"),
      fc.jsonValue(),
    ),
    message: fc.oneof(fc.string({ maxLength: 40 }), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

const FRAME_TYPES = [...Object.values(T), ...Object.values(TI)];
const frameType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...FRAME_TYPES) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);
const metaText = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .oneof(headMeta, logMeta, errorMeta, endMeta, loadedMeta, goneMeta)
      .map((m) => JSON.stringify(m)),
  },
  { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v) ?? "") },
  { weight: 1, arbitrary: fc.constantFrom("", "{", "nul", "[1,2", '{"status":200,"headers":[]}x') },
);
/** The id field: mostly the invocation being served, sometimes another. */
const frameId = fc.oneof(
  { weight: 5, arbitrary: fc.constant(CURRENT_ID) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 2, 3, 0xfffffff0) },
);

/** One attacker frame: structured with mutations most of the time, raw bytes sometimes. */
export const fuzzFrame: fc.Arbitrary<FuzzFrame> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .record({
        type: frameType,
        id: frameId,
        meta: metaText,
        payload: fc.oneof(
          { weight: 4, arbitrary: fc.constant(Buffer.alloc(0)) },
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
        ),
        metaLenDelta: fc.oneof(
          { weight: 12, arbitrary: fc.constant(0) },
          { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) },
        ),
      })
      .map(({ type, id, meta, payload, metaLenDelta }) => ({
        bytes: rawFrame(type, id === CURRENT_ID ? 0 : id, meta, payload, metaLenDelta),
        idAt: id === CURRENT_ID ? [5] : [],
      })),
  },
  {
    // A valid body chunk for the current invocation (to reach the stream checks).
    weight: 2,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 32 }).map((a) => ({
      bytes: rawFrame(T.RESP_CHUNK, 0, "", Buffer.from(a)),
      idAt: [5],
    })),
  },
  {
    // A length prefix that lies (too small, beyond every cap, or a whole frame short).
    weight: 1,
    arbitrary: fc
      .record({ len: fc.constantFrom(0, 3, 8, 20, 2 ** 24, 2 ** 31, 2 ** 32 - 1), type: frameType })
      .map(({ len, type }) => {
        const b = Buffer.alloc(13);
        b.writeUInt32LE(len, 0);
        b.writeUInt8(type, 4);
        return { bytes: b, idAt: [] };
      }),
  },
  {
    weight: 1,
    arbitrary: fc
      .uint8Array({ minLength: 1, maxLength: 48 })
      .map((a) => ({ bytes: Buffer.from(a), idAt: [] })),
  },
);

/** Joins frames into one write, with the offsets of their current-invocation ids. */
export function joinFrames(frames: FuzzFrame[]): FuzzFrame {
  const idAt: number[] = [];
  let off = 0;
  for (const f of frames) {
    for (const i of f.idAt) idAt.push(off + i);
    off += f.bytes.length;
  }
  return { bytes: Buffer.concat(frames.map((f) => f.bytes)), idAt };
}

/** Writes `id` at each offset in `idAt` (a copy). */
export function withId(f: FuzzFrame, id: number): Buffer {
  const b = Buffer.from(f.bytes);
  for (const off of f.idAt) b.writeUInt32LE(id >>> 0, off);
  return b;
}

const frameOf = (type: number, meta: unknown, payload = Buffer.alloc(0)): FuzzFrame => ({
  bytes: rawFrame(type, 0, meta === undefined ? "" : JSON.stringify(meta), payload),
  idAt: [5],
});
const validLog = fc
  .record({ level: fc.constantFrom("debug", "info", "warn", "error"), msg: fc.string({ maxLength: 40 }) })
  .map((m) => frameOf(T.LOG, { ...m, t: 1_700_000_000_000 }));
const validHead = fc
  .record({
    status: fc.integer({ min: 200, max: 599 }),
    headers: fc.array(
      fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), fc.stringMatching(/^[ -~]{0,30}$/)),
      {
        maxLength: 5,
      },
    ),
  })
  .map((m) => frameOf(T.RESP_HEAD, m));
const validChunk = fc
  .uint8Array({ minLength: 1, maxLength: 32 })
  .map((a) => frameOf(T.RESP_CHUNK, undefined, Buffer.from(a)));
const validEnd = fc.oneof(
  fc.constant(frameOf(T.RESP_END, { cpuMs: 1, pending: false })),
  fc
    .record({
      code: fc.constantFrom("NIMBUS_FUNCTION_ERROR", "NIMBUS_BAD_RESPONSE"),
      message: fc.string({ maxLength: 30 }),
    })
    .map((m) => frameOf(T.INVOKE_ERROR, { ...m, cpuMs: 1 })),
);

/** A well-formed response for the current invocation (logs, head, chunks, end or error). */
export const validStream: fc.Arbitrary<FuzzFrame[]> = fc
  .tuple(
    fc.array(validLog, { maxLength: 2 }),
    validHead,
    fc.array(fc.oneof(validChunk, validLog), { maxLength: 4 }),
    validEnd,
  )
  .map(([logs, head, body, end]) => [...logs, head, ...body, end]);

/**
 * A batch an attacker writes: valid responses (which take the guard deep into an
 * invocation's states) mixed with random and mutated frames.
 */
export function attackBatch(minGroups: number, maxGroups: number): fc.Arbitrary<FuzzFrame[]> {
  return fc
    .array(
      fc.oneof({ weight: 1, arbitrary: validStream }, { weight: 3, arbitrary: fuzzFrame.map((f) => [f]) }),
      { minLength: minGroups, maxLength: maxGroups },
    )
    .map((groups) => groups.flat());
}
