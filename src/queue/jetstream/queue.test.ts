/**
 * The JetStream queue against a real 3-server nats-server cluster started here (random
 * loopback ports, temp store directories): the same contract suite as the SQLite queue,
 * replicas 3, and no acknowledged message lost when a server is SIGKILLed mid-run.
 */
import { randomBytes } from "node:crypto";
import { after, before } from "node:test";
import { runQueueContract } from "../contract.ts";
import { type NatsCluster, natsServerUnavailable, startNatsCluster } from "./nats-cluster.ts";
import { JetStreamQueue } from "./queue.ts";

const skip = natsServerUnavailable();
let cluster: NatsCluster | undefined;

if (skip) console.log(`# skipped the JetStream queue contract: ${skip}`);
else {
  before(async () => {
    cluster = await startNatsCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });
  runQueueContract(
    "jetstream (3-server cluster, replicas 3)",
    (opts) =>
      JetStreamQueue.open({
        ...opts,
        servers: cluster!.urls,
        // A fresh set of streams per case, as the SQLite cases get a fresh database.
        prefix: `T${randomBytes(5).toString("hex")}`,
      }),
    { realTime: { slackMs: 400 } },
  );
}
