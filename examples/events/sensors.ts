// An MQTT trigger: every temperature reading of every device, in batches of up to 20.
//   npx nimbus deploy examples/events/sensors.ts
//   mosquitto_pub -q 1 -t sensors/kitchen/temp -m 21.5
//   npx nimbus triggers ls
export const config = {
  triggers: [
    { type: "mqtt", url: "mqtt://127.0.0.1:1883", topic: "sensors/+/temp", batchSize: 20, maxWait: "1s" },
  ],
};

interface Reading {
  body: string | Uint8Array;
  topic: string;
  attributes: { deviceId?: string };
  ack(): void;
}

export default {
  async fetch(): Promise<Response> {
    return new Response("send readings to sensors/<device>/temp\n");
  },
  async queue(batch: { messages: Reading[] }): Promise<void> {
    for (const m of batch.messages) {
      const celsius = Number(m.body);
      if (celsius > 30) console.warn(`hot: ${m.attributes.deviceId} at ${celsius} °C`);
      m.ack();
    }
  },
};
