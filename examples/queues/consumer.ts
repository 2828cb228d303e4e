// A consumer (Workers style): drains `jobs` in batches of up to 10 (or what arrived within
// 1 s). Each message is acked or retried on its own: an acked message is never delivered
// again; one retried 3 times is dead (`nimbus queue dlq ls jobs`) and forwarded to `jobs-dlq`.
//
//   npx nimbus deploy examples/queues/consumer.ts
//   npx nimbus queue info jobs          # counts and consumers
export const config = {
  queues: { consumers: [{ queue: "jobs", batchSize: 10, maxWait: "1s", maxRetries: 3, concurrency: 2 }] },
};

interface Message {
  id: string;
  body: { orderId: number };
  attempts: number;
  ack(): void;
  retry(options?: { delaySeconds?: number }): void;
}

export default {
  async fetch(): Promise<Response> {
    return new Response("consumer of the jobs queue");
  },
  async queue(batch: { queue: string; messages: Message[] }): Promise<void> {
    for (const m of batch.messages) {
      if (m.body.orderId % 7 === 0) {
        console.log(`order ${m.body.orderId}: supplier busy, retry ${m.attempts} in 30 s`);
        m.retry({ delaySeconds: 30 });
        continue;
      }
      console.log(`order ${m.body.orderId} processed`);
      m.ack();
    }
  },
};
