/** Test helper: an object store bucket with a random name on the shared nats-server, deleted by `dispose`. */
import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { SHARED_NATS } from "../../queue/jetstream/nats-cluster.ts";
import { NatsBlobBackend } from "./nats.ts";

/** Opens a fresh bucket; `dispose` deletes it and closes the connection. */
export async function openTestBackend(): Promise<{ backend: NatsBlobBackend; dispose(): Promise<void> }> {
  const bucket = `nimbus-test-bundles-${randomBytes(4).toString("hex")}`;
  const nc = await connect({ servers: SHARED_NATS });
  const backend = await NatsBlobBackend.open(nc, { bucket });
  return {
    backend,
    async dispose() {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(`OBJ_${bucket}`).catch(() => {});
      await nc.close();
    },
  };
}
