// A NATS JetStream trigger (a Lambda handler): each batch arrives as { Records }; its messages
// are acked to JetStream once the batch succeeded (or, out of retries, is in the DLQ).
//   nats stream add ORDERS --subjects 'orders.>' --defaults
//   npx nimbus deploy examples/events/orders-nats.ts
//   nats pub orders.created '{"id": 1}'
export const config = {
  triggers: [{ type: "nats", url: "nats://127.0.0.1:4222", stream: "ORDERS", consumer: "orders-fn" }],
};

export const handler = async (event: { Records: { topic: string; body: string }[] }) => {
  for (const r of event.Records) console.log(`${r.topic}: ${r.body}`);
  return { processed: event.Records.length };
};
