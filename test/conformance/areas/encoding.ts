/** TextEncoder/TextDecoder (Encoding Standard), TextEncoderStream/TextDecoderStream, atob/btoa. */
import { arrayEq, eq, readAllChunks, type Suite, throws } from "../harness.ts";

const b = (...x: number[]) => new Uint8Array(x);

/** The forgiving-base64 decode of the HTML Standard, as the oracle for atob. */
function oracleAtob(input: string): string | null {
  let s = input.replace(/[\t\n\f\r ]/g, "");
  if (s.length % 4 === 0) s = s.replace(/==?$/, "");
  if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) return null;
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let bits = 0;
  let n = 0;
  let out = "";
  for (const ch of s) {
    bits = (bits << 6) | A.indexOf(ch);
    n += 6;
    if (n >= 8) {
      n -= 8;
      out += String.fromCharCode((bits >> n) & 0xff);
    }
  }
  return out;
}

/** Registers the Encoding and base64 subtests. */
export function encodingTests(t: Suite): void {
  t.area = "Encoding";
  const utf8Bad: [number[], string][] = [
    [[0xc0], "\uFFFD"],
    [[0xc2, 0x41], "\uFFFDA"],
    [[0xe0, 0x80], "\uFFFD\uFFFD"],
    [[0xed, 0xa0, 0x80], "\uFFFD\uFFFD\uFFFD"],
    [[0xf0, 0x9f, 0x92], "\uFFFD"],
    [[0xf4, 0x90, 0x80, 0x80], "\uFFFD\uFFFD\uFFFD\uFFFD"],
    [[0xff], "\uFFFD"],
    [[0xe2, 0x82, 0x41], "\uFFFDA"],
  ];
  for (const [bytes, want] of utf8Bad) {
    t.test(`utf-8 decoder: invalid ${bytes.map((x) => x.toString(16)).join(" ")}`, () => {
      eq(new TextDecoder().decode(new Uint8Array(bytes)), want);
      throws("TypeError", () => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes)));
    });
  }
  t.test("TextEncoder encodes lone surrogates as U+FFFD", () => {
    arrayEq(new TextEncoder().encode("\uD800"), [0xef, 0xbf, 0xbd]);
    arrayEq(new TextEncoder().encode("a\uDC00b"), [0x61, 0xef, 0xbf, 0xbd, 0x62]);
    arrayEq(new TextEncoder().encode("\uD83D\uDE00"), [0xf0, 0x9f, 0x98, 0x80]);
  });
  t.test("TextEncoder.encodeInto with a lone surrogate", () => {
    const dst = new Uint8Array(10);
    const r = new TextEncoder().encodeInto("a\uD834", dst);
    eq(r.read, 2);
    eq(r.written, 4);
    arrayEq(dst.subarray(0, 4), [0x61, 0xef, 0xbf, 0xbd]);
  });
  t.test("TextEncoder.encodeInto does not split a character", () => {
    const dst = new Uint8Array(3);
    const r = new TextEncoder().encodeInto("a\u00e9\u00e9", dst);
    eq(r.read, 2);
    eq(r.written, 3);
  });
  t.test("TextEncoder.encoding is utf-8", () => eq(new TextEncoder().encoding, "utf-8"));
  t.test("TextEncoder.encode() with no argument", () => eq(new TextEncoder().encode().length, 0));
  const labels: [string, string][] = [
    ["utf8", "utf-8"],
    [" UTF-8\n", "utf-8"],
    ["unicode-1-1-utf-8", "utf-8"],
    ["utf-16", "utf-16le"],
    ["utf-16le", "utf-16le"],
    ["utf-16be", "utf-16be"],
    ["latin1", "windows-1252"],
    ["ascii", "windows-1252"],
    ["iso-8859-2", "iso-8859-2"],
    ["koi8-r", "koi8-r"],
    ["windows-1251", "windows-1251"],
    ["x-mac-cyrillic", "x-mac-cyrillic"],
    ["iso-8859-15", "iso-8859-15"],
  ];
  for (const [label, name] of labels) {
    t.test(`TextDecoder label ${JSON.stringify(label)} is ${name}`, () =>
      eq(new TextDecoder(label).encoding, name),
    );
  }
  t.test("TextDecoder rejects unknown and replacement labels", () => {
    throws("RangeError", () => new TextDecoder("utf-7"));
    throws("RangeError", () => new TextDecoder("replacement"));
    throws("RangeError", () => new TextDecoder("iso-2022-kr"));
  });
  t.test("utf-16le decode with BOM and surrogate pair", () => {
    eq(
      new TextDecoder("utf-16le").decode(b(0xff, 0xfe, 0x61, 0x00, 0x3d, 0xd8, 0x00, 0xde)),
      "a\uD83D\uDE00",
    );
  });
  t.test("utf-16be decode", () => {
    eq(
      new TextDecoder("utf-16be").decode(b(0xfe, 0xff, 0x00, 0x61, 0xd8, 0x3d, 0xde, 0x00)),
      "a\uD83D\uDE00",
    );
  });
  t.test("utf-16le lone surrogate and odd byte give U+FFFD", () => {
    eq(new TextDecoder("utf-16le").decode(b(0x00, 0xd8, 0x61, 0x00)), "\uFFFDa");
    eq(new TextDecoder("utf-16le").decode(b(0x61, 0x00, 0x62)), "a\uFFFD");
    throws("TypeError", () => new TextDecoder("utf-16le", { fatal: true }).decode(b(0x00, 0xdc)));
  });
  t.test("utf-16le streaming across calls", () => {
    const d = new TextDecoder("utf-16le");
    let s = d.decode(b(0x61), { stream: true });
    s += d.decode(b(0x00, 0x3d, 0xd8), { stream: true });
    s += d.decode(b(0x00, 0xde));
    eq(s, "a\uD83D\uDE00");
  });
  t.test("utf-8 streaming across calls", () => {
    const d = new TextDecoder();
    let s = "";
    for (const x of [0xf0, 0x9f, 0x98, 0x80, 0x61]) s += d.decode(b(x), { stream: true });
    s += d.decode();
    eq(s, "\uD83D\uDE00a");
  });
  t.test("utf-8 BOM is stripped, unless ignoreBOM", () => {
    eq(new TextDecoder().decode(b(0xef, 0xbb, 0xbf, 0x61)), "a");
    eq(new TextDecoder("utf-8", { ignoreBOM: true }).decode(b(0xef, 0xbb, 0xbf, 0x61)), "\uFEFFa");
  });
  t.test("TextDecoder attributes", () => {
    const d = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    eq(d.fatal, true);
    eq(d.ignoreBOM, true);
  });
  t.test("TextDecoder decodes DataView and ArrayBuffer", () => {
    eq(new TextDecoder().decode(new DataView(b(0x61, 0x62).buffer)), "ab");
    eq(new TextDecoder().decode(b(0x61, 0x62).buffer), "ab");
  });
  t.test("TextDecoder rejects non-buffer input", () => {
    throws("TypeError", () => new TextDecoder().decode("ab" as unknown as Uint8Array));
  });
  const single: [string, number[], string][] = [
    ["windows-1252", [0x80, 0x9f, 0xe9, 0x81], "\u20AC\u0178\u00E9\u0081"],
    ["iso-8859-2", [0xa1, 0xb1, 0xe8], "\u0104\u0105\u010D"],
    ["koi8-r", [0xc1, 0xe1], "\u0430\u0410"],
    ["windows-1251", [0xc0, 0xff], "\u0410\u044F"],
    ["iso-8859-7", [0xc1], "\u0391"],
    ["windows-874", [0xa1], "\u0E01"],
    ["macintosh", [0x80], "\u00C4"],
  ];
  for (const [enc, bytes, want] of single) {
    t.test(`single-byte decoder ${enc}`, () => eq(new TextDecoder(enc).decode(new Uint8Array(bytes)), want));
  }
  t.test("iso-8859-3 unmapped byte is U+FFFD, fatal throws", () => {
    eq(new TextDecoder("iso-8859-3").decode(b(0xa5)), "\uFFFD");
    throws("TypeError", () => new TextDecoder("iso-8859-3", { fatal: true }).decode(b(0xa5)));
  });
  t.test("TextEncoderStream encodes chunks, lone surrogate split across chunks", async () => {
    const s = new TextEncoderStream();
    const w = s.writable.getWriter();
    void w.write("a\uD83D");
    void w.write("\uDE00");
    void w.close();
    const chunks = await readAllChunks(s.readable);
    const all = chunks.flatMap((c) => [...c]);
    arrayEq(all, [0x61, 0xf0, 0x9f, 0x98, 0x80]);
  });
  t.test("TextDecoderStream decodes split characters", async () => {
    const s = new TextDecoderStream();
    const w = s.writable.getWriter();
    void w.write(b(0xe2, 0x82));
    void w.write(b(0xac));
    void w.close();
    eq((await readAllChunks(s.readable)).join(""), "\u20AC");
  });
  t.test("TextDecoderStream rejects a non-buffer chunk", async () => {
    const s = new TextDecoderStream();
    const w = s.writable.getWriter();
    const read = readAllChunks(s.readable).catch((e: Error) => e.name);
    let failed = false;
    await w.write("x" as unknown as Uint8Array<ArrayBuffer>).catch(() => {
      failed = true;
    });
    eq(failed, true, "write rejected");
    eq(await read, "TypeError", "readable errored");
  });

  t.area = "atob/btoa";
  const inputs: string[] = [
    "",
    "abcd",
    " abcd",
    "abcd ",
    "ab==",
    "ab=",
    "abc=",
    "a",
    "ab",
    "abc",
    "abcde",
    "ab\tcd",
    "ab\fcd",
    "ab\vcd",
    "a=b=",
    "=",
    "==",
    "===",
    "\u00ff",
    "ab/+",
    "ab-_",
    "YQ",
    "YR",
    "YQ==",
    "YR==",
    "abcd=",
    "ab\ncd",
    "\u0000nonsense",
    "ab c d",
    "AAAA=",
    "A",
  ];
  for (let i = 0; i < 256; i++) inputs.push(`YW${String.fromCharCode(i)}=`);
  for (const s of inputs) {
    t.test(`atob(${JSON.stringify(s)})`, () => {
      const want = oracleAtob(s);
      if (want === null) throws("InvalidCharacterError", () => atob(s));
      else eq(atob(s), want);
    });
  }
  t.test("atob(undefined) and atob(null) convert to strings", () => {
    throws("InvalidCharacterError", () => atob(undefined as unknown as string));
    eq(atob(null as unknown as string), "\u009e\u00e9e");
  });
  for (let i = 0; i < 256; i += 5) {
    const s = String.fromCharCode(i, (i * 7) & 0xff, (i * 13) & 0xff);
    t.test(`btoa round trip ${i}`, () => eq(atob(btoa(s)), s));
  }
  t.test("btoa rejects code points above U+00FF", () => {
    throws("InvalidCharacterError", () => btoa("\u0100"));
    throws("InvalidCharacterError", () => btoa("\uD83D\uDE00"));
  });
  t.test("btoa known values", () => {
    eq(btoa(""), "");
    eq(btoa("f"), "Zg==");
    eq(btoa("fo"), "Zm8=");
    eq(btoa("foo"), "Zm9v");
    eq(btoa(null as unknown as string), "bnVsbA==");
  });
}
