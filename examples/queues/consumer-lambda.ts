// The same consumer as a Lambda handler: SQS's event shape and partial batch responses, so
// this code runs unchanged on AWS Lambda behind SQS.
//
//   npx nimbus deploy examples/queues/consumer-lambda.ts
export const config = { queues: { consumers: [{ queue: "jobs", batchSize: 10, maxWait: "1s" }] } };

export const handler = async (event: { Records: { messageId: string; body: string }[] }) => {
  const batchItemFailures: { itemIdentifier: string }[] = [];
  for (const record of event.Records) {
    const order = JSON.parse(record.body) as { orderId: number };
    if (order.orderId % 7 === 0) batchItemFailures.push({ itemIdentifier: record.messageId });
    else console.log(`order ${order.orderId} processed`);
  }
  return { batchItemFailures };
};
