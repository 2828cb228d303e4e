/**
 * WebIDL pair iterators (`entries`/`keys`/`values` of URLSearchParams, Headers, FormData):
 * live iterator objects that inherit from %IteratorPrototype% and read the list afresh at
 * every `next()`, as the standard says (so entries added while iterating are seen).
 */

const IteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())) as object;

/** 0: keys, 1: values, 2: entries. */
export type IterKind = 0 | 1 | 2;

interface State {
  list: () => readonly (readonly [string, unknown])[];
  kind: IterKind;
  index: number;
}

/** Makes the iterator factory of interface `tag` (its objects print as `[object <tag> Iterator]`). */
export function pairIterator(
  tag: string,
): <V>(list: () => readonly (readonly [string, V])[], kind: IterKind) => IterableIterator<never> {
  const states = new WeakMap<object, State>();
  const proto = Object.create(IteratorPrototype, {
    next: {
      value: function next(this: object) {
        const s = states.get(this);
        if (!s) throw new TypeError(`next() called on an object that is not a ${tag} iterator.`);
        const l = s.list();
        if (s.index >= l.length) return { value: undefined, done: true };
        const e = l[s.index++]!;
        return { value: s.kind === 0 ? e[0] : s.kind === 1 ? e[1] : [e[0], e[1]], done: false };
      },
      writable: true,
      enumerable: true,
      configurable: true,
    },
    [Symbol.toStringTag]: { value: `${tag} Iterator`, configurable: true },
  });
  return (list, kind) => {
    const it = Object.create(proto);
    states.set(it, { list, kind, index: 0 });
    return it;
  };
}

/** WebIDL USVString conversion: ToString (a symbol throws), lone surrogates become U+FFFD. */
export function toUSV(v: unknown): string {
  if (typeof v === "symbol") throw new TypeError("Cannot convert a Symbol value to a string.");
  return `${v as string}`.toWellFormed();
}

/** WebIDL ByteString conversion: ToString, and every code unit must be ≤ U+00FF. */
export function toByteString(v: unknown, what: string): string {
  if (typeof v === "symbol") throw new TypeError("Cannot convert a Symbol value to a string.");
  const s = `${v as string}`;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) throw new TypeError(`${what} has a character above U+00FF at index ${i}.`);
  }
  return s;
}

/**
 * WebIDL conversion of `sequence<sequence<T>> or record<K, T>` init dictionaries: calls
 * `pair(name, value)` for each entry, in the order the standard reads them.
 */
export function forEachInitPair(
  init: object,
  pair: (name: unknown, value: unknown) => void,
  what: string,
): void {
  const iter = (init as { [Symbol.iterator]?: unknown })[Symbol.iterator];
  if (iter !== undefined && iter !== null) {
    if (typeof iter !== "function") throw new TypeError(`${what}: the init's @@iterator is not callable.`);
    for (const p of init as Iterable<unknown>) {
      if ((typeof p !== "object" && typeof p !== "function") || p === null) {
        throw new TypeError(`${what}: each init entry must be a sequence of two strings.`);
      }
      const arr = [...(p as Iterable<unknown>)];
      if (arr.length !== 2)
        throw new TypeError(`${what}: each init entry must have exactly two items (name, value).`);
      pair(arr[0], arr[1]);
    }
    return;
  }
  for (const key of Reflect.ownKeys(init)) {
    const desc = Reflect.getOwnPropertyDescriptor(init, key);
    if (!desc?.enumerable) continue;
    if (typeof key === "symbol") throw new TypeError(`${what}: a record key cannot be a Symbol.`);
    pair(key, (init as Record<string, unknown>)[key]);
  }
}
