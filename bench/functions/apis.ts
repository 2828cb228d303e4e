/**
 * Times Web API calls inside a function: `GET /?n=20000` answers, per API, the µs one call
 * takes (the mean over n calls after a warm-up of n/10). The same file runs on both executors.
 */
const sink: unknown[] = [];

function time(n: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < n / 10; i++) sink[i & 7] = fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) sink[i & 7] = fn(i);
  return ((performance.now() - t0) * 1000) / n;
}

export default {
  fetch(request: Request): Response {
    const n = Math.min(200_000, Math.max(100, Number(new URL(request.url).searchParams.get("n") ?? 20_000)));
    const headers = new Headers({ "content-type": "text/plain", "x-request-id": "abc", accept: "*/*" });
    const urls = [
      "https://example.com/a/b?x=1&y=2#f",
      "http://user:pw@[::1]:8080/p/../q",
      "/rel?x",
      "foo://h/p",
    ];
    const result = {
      n,
      "new URL()": time(n, (i) => new URL(urls[i & 3]!, "https://base.example/dir/")),
      "url.searchParams.get()": time(n, (i) => new URL(urls[i & 1]!).searchParams.get("x")),
      "new Request()": time(
        n,
        (i) => new Request(`https://example.com/${i & 7}`, { method: "POST", headers: { a: "b" } }),
      ),
      "new Response()": time(
        n,
        () => new Response("hello", { status: 201, headers: { "content-type": "text/plain" } }),
      ),
      "headers.get()": time(n, (i) => headers.get(i & 1 ? "content-type" : "x-request-id")),
      "new TextDecoder().decode()": time(n, () =>
        new TextDecoder().decode(new Uint8Array([104, 195, 169, 108, 108, 111])),
      ),
    };
    return Response.json(result);
  },
};
