// The function the benchmarks deploy: the same answer as the bare node:http server in
// bench/server.ts, and no console output, so the comparison measures the platform's hop
// (gateway → instance → gateway) and not the function's work.
export default {
  async fetch(): Promise<Response> {
    return new Response("Hello, world!\n", { headers: { "content-type": "text/plain" } });
  },
};
