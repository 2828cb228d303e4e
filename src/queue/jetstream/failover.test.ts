/**
 * Failover: a 3-server nats-server cluster (started here), the queue with replicas 3,
 * producers and a consumer running, and the work stream's leader SIGKILLed mid-run. Every
 * message whose enqueue was acknowledged must be delivered afterwards.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { natsServerUnavailable, natsServerVersion, startNatsCluster } from "./nats-cluster.ts";
import { JetStreamQueue } from "./queue.ts";

const skip = natsServerUnavailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("SIGKILL of the work stream's leader mid-run: no acknowledged message is lost", { skip }, async () => {
  const cluster = await startNatsCluster(3);
  const q = await JetStreamQueue.open({ servers: cluster.urls, prefix: "FAILOVER", timeoutMs: 2000 });
  const nc = await connect({ servers: cluster.urls });
  try {
    assert.equal(q.replicas, 3, "three servers: replicas 3");
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info("FAILOVER_QWORK");
    assert.equal(info.config.num_replicas, 3);
    assert.equal(info.cluster?.replicas?.length, 2, "a leader and two followers");
    const leader = info.cluster!.leader!;

    const acknowledged = new Set<string>();
    const delivered = new Set<string>();
    let refused = 0;
    let redelivered = 0;
    let ackedAfterKill = 0;
    let killed = false;
    let producing = true;
    let consuming = true;

    const producer = async (p: number) => {
      for (let i = 0; producing; i++) {
        const id = `p${p}-${i}`;
        try {
          await q.enqueue("jobs", [{ id, body: Buffer.from(id) }]);
          acknowledged.add(id);
          if (killed) ackedAfterKill++;
        } catch {
          // Not acknowledged: the caller knows it may not be stored (and retries in real use).
          refused++;
          await sleep(50);
        }
      }
    };
    const consumer = async () => {
      while (consuming) {
        try {
          const msgs = await q.lease("jobs", 50, 3000);
          for (const m of msgs) {
            if (delivered.has(m.id)) redelivered++;
            delivered.add(m.id);
            await q.ack(m.id, m.token).catch(() => {});
          }
          if (msgs.length === 0) await sleep(50);
        } catch {
          await sleep(100);
        }
      }
    };

    const producers = [0, 1, 2, 3].map(producer);
    const consuming_ = consumer();
    while (acknowledged.size < 300) await sleep(50);
    cluster.kill(leader);
    killed = true;
    const atKill = acknowledged.size;
    // Keep producing through the election and a while after it.
    const until = Date.now() + 30_000;
    while (ackedAfterKill < 300 && Date.now() < until) await sleep(100);
    producing = false;
    await Promise.all(producers);

    // Drain: everything acknowledged must come out.
    const drainUntil = Date.now() + 60_000;
    const missing = () => [...acknowledged].filter((id) => !delivered.has(id));
    while (missing().length > 0 && Date.now() < drainUntil) await sleep(200);
    consuming = false;
    await consuming_;

    const newInfo = await jsm.streams.info("FAILOVER_QWORK");
    console.log(
      `# nats-server ${natsServerVersion()}: killed ${leader} (stream leader) after ${atKill} acknowledged; ` +
        `new leader ${newInfo.cluster?.leader}; acknowledged ${acknowledged.size} (${ackedAfterKill} after the kill), ` +
        `refused while failing over ${refused}, delivered ${delivered.size}, redelivered ${redelivered}, ` +
        `lost ${missing().length}`,
    );
    assert.deepEqual(missing(), [], "every acknowledged message was delivered");
    assert.ok(ackedAfterKill > 0, "the two surviving servers kept accepting messages");
    assert.notEqual(newInfo.cluster?.leader, leader);

    // The killed server comes back with its store directory and catches up as a follower.
    await cluster.restart(leader);
    const caughtUp = Date.now() + 30_000;
    let back: { current: boolean } | undefined;
    while (Date.now() < caughtUp) {
      back = (await jsm.streams.info("FAILOVER_QWORK")).cluster?.replicas?.find((r) => r.name === leader);
      if (back?.current) break;
      await sleep(250);
    }
    assert.equal(back?.current, true, "the restarted server is a current replica again");
  } finally {
    await q.close().catch(() => {});
    await nc.close();
    await cluster.stop();
  }
});
