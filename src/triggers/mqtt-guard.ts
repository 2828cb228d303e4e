/**
 * A byte-stream guard for an MQTT connection: reads each packet's fixed header and ends the
 * connection when the broker announces a packet larger than `maxPacketBytes`, before a byte
 * of it is buffered (mqtt.js's parser would otherwise collect up to 256 MB per packet).
 */
import { Duplex } from "node:stream";

/** Counts packet boundaries in a stream of MQTT bytes (pure; `push` returns an error or undefined). */
export class PacketSizeGuard {
  private readonly max: number;
  /** Bytes of the current packet's body still to skip. */
  private remaining = 0;
  /** 0: expecting a fixed header's first byte; 1..4: reading its length varint. */
  private lenBytes = 0;
  private len = 0;
  private mult = 1;
  private inHeader = false;

  constructor(maxPacketBytes: number) {
    this.max = maxPacketBytes;
  }

  /** Feeds bytes; returns an error message when a packet is over the limit. */
  push(chunk: Uint8Array): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        continue;
      }
      const b = chunk[i++]!;
      if (!this.inHeader) {
        this.inHeader = true;
        this.lenBytes = 0;
        this.len = 0;
        this.mult = 1;
        continue;
      }
      this.len += (b & 0x7f) * this.mult;
      this.mult *= 128;
      this.lenBytes++;
      if (b & 0x80) {
        if (this.lenBytes >= 4) return "malformed MQTT packet length";
        continue;
      }
      this.inHeader = false;
      if (this.len > this.max)
        return `the broker sent a ${this.len}-byte packet; this trigger accepts at most ${this.max}`;
      this.remaining = this.len;
    }
    return undefined;
  }
}

/** Wraps a connected socket so that oversize packets end the connection. */
export function guardStream(
  socket: Duplex,
  maxPacketBytes: number,
  onViolation: (msg: string) => void,
): Duplex {
  const guard = new PacketSizeGuard(maxPacketBytes);
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, enc, cb) {
      socket.write(chunk, enc, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  socket.on("data", (chunk: Buffer) => {
    const bad = guard.push(chunk);
    if (bad) {
      onViolation(bad);
      d.destroy(new Error(bad));
      return;
    }
    if (!d.push(chunk)) socket.pause();
  });
  socket.on("end", () => d.push(null));
  socket.on("error", (err) => d.destroy(err));
  socket.on("close", () => d.destroy());
  socket.on("connect", () => d.emit("connect"));
  return d;
}
