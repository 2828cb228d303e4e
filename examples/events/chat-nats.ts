// A core NATS trigger with a queue group (at most once, as core NATS is), delivered to a plain
// fetch handler: one POST per message carrying a binary-mode CloudEvent.
//   npx nimbus deploy examples/events/chat-nats.ts
//   nats pub chat.room1 'hello'
//   npx nimbus logs chat-nats
export const config = {
  triggers: [{ type: "nats", url: "nats://127.0.0.1:4222", subject: "chat.*", queue: "chat-workers" }],
};
export default {
  async fetch(request: Request): Promise<Response> {
    console.log(`${request.headers.get("ce-subject")}: ${await request.text()}`);
    return new Response(null, { status: 204 });
  },
};
