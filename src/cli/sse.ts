/**
 * A small Server-Sent Events reader for the CLI (`logs --follow`): parses `id:`, `event:`
 * and `data:` fields of a `text/event-stream` body into events.
 */

/** One SSE event. */
export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/** Bytes one event may hold before the stream is refused (the server never sends more). */
const MAX_EVENT = 8 * 1024 * 1024;

/** Yields the events of an SSE body; comment lines (heartbeats) are skipped. */
export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buf = "";
  let id: string | undefined;
  let event = "message";
  let data: string[] = [];
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    if (buf.length > MAX_EVENT) throw new Error("an event of the log stream is too large");
    let i = buf.indexOf("\n");
    while (i >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
      i = buf.indexOf("\n");
      if (line === "") {
        if (data.length > 0) yield { id, event, data: data.join("\n") };
        event = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
  }
}
