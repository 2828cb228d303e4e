// An async job handler (Lambda style): invoke it without waiting for the result.
//
//   npx nimbus deploy examples/events/async-job.ts
//   npx nimbus invoke async-job --async -d '{"orderId": 42}'      # prints the invocation id
//   npx nimbus invocation <id>                                   # state, attempts, result
//   curl -X POST -H 'x-nimbus-invocation-type: event' -d '{"orderId": 43}' http://127.0.0.1:7070/fn/async-job
//
// A failure is retried twice with backoff, then lands in the dead-letter queue
// (`nimbus dlq ls async-job`); the outcome is reported to the destinations below.
export const config = {
  retries: 2,
  maxEventAge: "1h",
  destinations: { onFailure: "fn:alerts" },
};

export const handler = async (event: { orderId?: number }) => {
  if (typeof event.orderId !== "number") throw new Error("orderId missing");
  console.log(`processing order ${event.orderId}`);
  return { statusCode: 200, body: JSON.stringify({ processed: event.orderId }) };
};
