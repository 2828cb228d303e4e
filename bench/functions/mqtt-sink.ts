// Bench target of `npm run bench -- events`: a queue(batch) consumer that logs, per batch, the
// publish-to-function latency of each message (the payload carries its publish time, ms).
interface Msg {
  body: string | Uint8Array;
}
export default {
  async fetch(): Promise<Response> {
    return new Response("ok");
  },
  async queue(batch: { messages: Msg[] }): Promise<void> {
    const now = Date.now();
    const lat = batch.messages.map((m) => now - Number(String(m.body)));
    console.log(`lat ${lat.join(",")}`);
  },
};
