// A Web-standard fetch handler: the same code runs on Cloudflare Workers, Deno and Bun.
export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const name = url.searchParams.get("name") ?? "world";
    console.log(`saying hello to ${name}`);
    return new Response(`Hello, ${name}!\n`, { headers: { "content-type": "text/plain" } });
  },
};
