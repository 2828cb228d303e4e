// A producer (Workers style): POST /fn/orders-api with a JSON order; it is queued on `jobs`
// and answered 202 once the message is stored durably (send() resolves only then).
//
//   npx nimbus queue create jobs --max-retries 3 --dlq jobs-dlq
//   npx nimbus queue create jobs-dlq
//   npx nimbus deploy examples/queues/producer.ts
//   curl -X POST -d '{"orderId": 42}' http://127.0.0.1:7070/fn/orders-api
export const config = { queues: { producers: { JOBS: "jobs" } } };

interface Queue {
  send(body: unknown, options?: { delaySeconds?: number }): Promise<void>;
  sendBatch(messages: { body: unknown; delaySeconds?: number }[]): Promise<void>;
}

export default {
  async fetch(request: Request, env: { JOBS: Queue }): Promise<Response> {
    const order = (await request.json()) as { orderId?: number };
    if (typeof order.orderId !== "number") return new Response("orderId missing", { status: 400 });
    await env.JOBS.send(order);
    return new Response("queued", { status: 202 });
  },
};
