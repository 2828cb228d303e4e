/** The Fetch Standard's Headers for the isolate runtime (WebIDL conversions, live iterators). */
import { forEachInitPair, pairIterator, toByteString } from "./iter.ts";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function normName(name: unknown): string {
  const n = toByteString(name, "A header name");
  if (!TOKEN.test(n)) throw new TypeError(`Invalid header name: ${JSON.stringify(n)}`);
  return n.toLowerCase();
}
function normValue(value: unknown): string {
  const v = toByteString(value, "A header value").replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\0\n\r]/.test(v)) throw new TypeError(`Invalid header value: ${JSON.stringify(v)}`);
  return v;
}

/** What `new Headers(init)` accepts. */
export type HeadersInit = Headers | [string, string][] | Record<string, string>;

const iterate = pairIterator("Headers");

/** The Fetch Standard's Headers. */
export class Headers {
  /** Lower-case name → values (set-cookie kept apart, others combined with ", "). */
  readonly #map = new Map<string, string[]>();
  #sorted: [string, string][] | undefined;
  /** @internal "immutable" guard for responses of fetch() and Response.error(). */
  _guard: "none" | "immutable" = "none";

  constructor(init?: unknown) {
    if (init === undefined) return;
    if ((typeof init !== "object" && typeof init !== "function") || init === null) {
      throw new TypeError("Headers init must be an object (a record or a sequence of [name, value] pairs).");
    }
    if (init instanceof Headers) {
      for (const [k, vs] of init.#map) this.#map.set(k, vs.slice());
      return;
    }
    forEachInitPair(init, (k, v) => this.append(k as string, v as string), "Headers");
  }

  #check(): void {
    if (this._guard === "immutable") throw new TypeError("These headers are immutable.");
    this.#sorted = undefined;
  }
  append(name: string, value: string): void {
    const n = normName(name);
    const v = normValue(value);
    this.#check();
    const list = this.#map.get(n);
    if (list) list.push(v);
    else this.#map.set(n, [v]);
  }
  set(name: string, value: string): void {
    const n = normName(name);
    const v = normValue(value);
    this.#check();
    this.#map.set(n, [v]);
  }
  delete(name: string): void {
    const n = normName(name);
    this.#check();
    this.#map.delete(n);
  }
  get(name: string): string | null {
    const list = this.#map.get(normName(name));
    if (!list) return null;
    return list.length === 1 ? list[0]! : list.join(", ");
  }
  getSetCookie(): string[] {
    return (this.#map.get("set-cookie") ?? []).slice();
  }
  has(name: string): boolean {
    return this.#map.has(normName(name));
  }
  /** The sorted and combined list the standard iterates over (cached until the next change). */
  #pairsSorted(): [string, string][] {
    if (this.#sorted) return this.#sorted;
    const out: [string, string][] = [];
    for (const n of [...this.#map.keys()].sort()) {
      const list = this.#map.get(n)!;
      if (n === "set-cookie") for (const v of list) out.push([n, v]);
      else out.push([n, list.join(", ")]);
    }
    this.#sorted = out;
    return out;
  }
  forEach(cb: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void {
    if (typeof cb !== "function") throw new TypeError("Headers.forEach: the callback is not a function.");
    for (let i = 0; i < this.#pairsSorted().length; i++) {
      const [k, v] = this.#pairsSorted()[i]!;
      cb.call(thisArg, v, k, this);
    }
  }
  entries(): IterableIterator<[string, string]> {
    return iterate(() => this.#pairsSorted(), 2);
  }
  keys(): IterableIterator<string> {
    return iterate(() => this.#pairsSorted(), 0);
  }
  values(): IterableIterator<string> {
    return iterate(() => this.#pairsSorted(), 1);
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  get [Symbol.toStringTag](): string {
    return "Headers";
  }
  /** @internal Pairs in wire form: one pair per set-cookie, others combined. */
  _pairs(): [string, string][] {
    const out: [string, string][] = [];
    for (const [n, list] of this.#map) {
      if (n === "set-cookie") for (const v of list) out.push([n, v]);
      else out.push([n, list.length === 1 ? list[0]! : list.join(", ")]);
    }
    return out;
  }
}
