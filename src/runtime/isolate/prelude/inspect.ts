/**
 * `console` formatting for the isolate runtime: `util.format`-compatible placeholders and a
 * compact `util.inspect` look-alike, so a log line reads the same on both executors.
 */

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function quote(s: string): string {
  const q = !s.includes("'") ? "'" : !s.includes('"') ? '"' : !s.includes("`") ? "`" : "'";
  const body = s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
  return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
}

function keyString(k: string | symbol): string {
  if (typeof k === "symbol") return `[${k.toString()}]`;
  return IDENT.test(k) ? k : quote(k);
}

function wrap(prefix: string, open: string, close: string, items: string[], indent: string): string {
  if (items.length === 0) return `${prefix}${open}${close}`;
  const single = `${prefix}${open} ${items.join(", ")} ${close}`;
  if (single.length - prefix.length <= 72 && !items.some((i) => i.includes("\n"))) return single;
  const inner = `${indent}  `;
  return `${prefix}${open}\n${items.map((i) => inner + i).join(",\n")}\n${indent}${close}`;
}

/** Roughly `util.inspect(value)` with Node's defaults (depth 2). */
export function inspect(value: unknown, depth = 2, seen: unknown[] = [], indent = ""): string {
  switch (typeof value) {
    case "string":
      return seen.length === 0 ? value : quote(value);
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "bigint":
      return `${value}n`;
    case "boolean":
    case "undefined":
      return String(value);
    case "symbol":
      return value.toString();
    case "function": {
      const name = (value as { name?: string }).name;
      const cls = /^class\b/.test(Function.prototype.toString.call(value));
      if (cls) return `[class ${name || "(anonymous)"}]`;
      return name ? `[Function: ${name}]` : "[Function (anonymous)]";
    }
  }
  if (value === null) return "null";
  const obj = value as object;
  if (seen.includes(obj)) return "[Circular *1]";
  if (obj instanceof Error) {
    const stack = obj.stack ?? `${obj.name}: ${obj.message}`;
    return seen.length > 0 ? `[${stack}]` : stack;
  }
  if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? "Invalid Date" : obj.toISOString();
  if (obj instanceof RegExp) return obj.toString();
  if (obj instanceof Promise) return "Promise { <pending> }";
  const nextSeen = [...seen, obj];
  const sub = (v: unknown): string =>
    inspect(v, depth - 1, nextSeen.length === 0 ? [obj] : nextSeen, `${indent}  `);
  if (Array.isArray(obj)) {
    if (depth < 0) return "[Array]";
    const items = obj.slice(0, 100).map((v) => sub(v));
    if (obj.length > 100) items.push(`... ${obj.length - 100} more items`);
    return wrap("", "[", "]", items, indent);
  }
  if (ArrayBuffer.isView(obj) && !(obj instanceof DataView)) {
    const arr = obj as unknown as ArrayLike<number> & { constructor: { name: string } };
    const items = Array.from({ length: Math.min(arr.length, 100) }, (_, i) => String(arr[i]));
    if (arr.length > 100) items.push(`... ${arr.length - 100} more items`);
    return wrap(`${arr.constructor.name}(${arr.length}) `, "[", "]", items, indent);
  }
  if (obj instanceof ArrayBuffer) return `ArrayBuffer { byteLength: ${obj.byteLength} }`;
  if (obj instanceof Map) {
    if (depth < 0) return "[Map]";
    const items = [...obj].map(([k, v]) => `${sub(k)} => ${sub(v)}`);
    return wrap(`Map(${obj.size}) `, "{", "}", items, indent);
  }
  if (obj instanceof Set) {
    if (depth < 0) return "[Set]";
    return wrap(
      `Set(${obj.size}) `,
      "{",
      "}",
      [...obj].map((v) => sub(v)),
      indent,
    );
  }
  const proto = Object.getPrototypeOf(obj);
  const ctor = proto === null ? "[Object: null prototype]" : (proto.constructor?.name as string | undefined);
  const prefix = ctor && ctor !== "Object" ? `${ctor} ` : "";
  if (depth < 0) return `[${ctor && ctor !== "Object" ? ctor : "Object"}]`;
  const items: string[] = [];
  for (const k of Reflect.ownKeys(obj)) {
    const desc = Object.getOwnPropertyDescriptor(obj, k);
    if (!desc?.enumerable) continue;
    if (desc.get || desc.set)
      items.push(
        `${keyString(k)}: [${desc.get && desc.set ? "Getter/Setter" : desc.get ? "Getter" : "Setter"}]`,
      );
    else items.push(`${keyString(k)}: ${sub(desc.value)}`);
  }
  return wrap(prefix, "{", "}", items, indent);
}

/** `util.format`: printf-like placeholders, then the rest inspected and joined with spaces. */
export function format(...args: unknown[]): string {
  const first = args[0];
  let out = "";
  let i = 0;
  if (typeof first === "string") {
    i = 1;
    let last = 0;
    for (let p = 0; p < first.length - 1; p++) {
      if (first.charCodeAt(p) !== 37) continue;
      const c = first[p + 1];
      let rep: string | undefined;
      if (c === "%") {
        out += `${first.slice(last, p)}%`;
        last = p + 2;
        p++;
        continue;
      }
      if (i >= args.length) continue;
      const a = args[i];
      switch (c) {
        case "s":
          rep =
            typeof a === "string"
              ? a
              : typeof a === "bigint"
                ? `${a}n`
                : typeof a === "object" && a !== null
                  ? inspect(a, 1, [{}])
                  : String(a);
          break;
        case "d":
        case "i":
          rep =
            typeof a === "bigint"
              ? `${a}n`
              : typeof a === "object"
                ? "NaN"
                : String(c === "i" ? Math.trunc(Number(a)) : Number(a));
          break;
        case "f":
          rep = String(Number.parseFloat(String(a)));
          break;
        case "j":
          try {
            rep = JSON.stringify(a);
          } catch {
            rep = "[Circular]";
          }
          break;
        case "o":
        case "O":
          rep = inspect(a, c === "o" ? 4 : 2, [{}]).replace(/^'|'$/g, "'");
          if (typeof a === "string") rep = quote(a);
          break;
        case "c":
          rep = "";
          break;
      }
      if (rep === undefined) continue;
      out += first.slice(last, p) + rep;
      last = p + 2;
      p++;
      i++;
    }
    out += first.slice(last);
  }
  for (; i < args.length; i++) {
    const a = args[i];
    out += (out.length > 0 || i > 0 ? " " : "") + (typeof a === "string" ? a : inspect(a));
  }
  return out;
}
