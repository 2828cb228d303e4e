import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger, messageLog, prettyLine, requestId, requestLevel } from "./log.ts";

function sink(): { stream: Writable & { isTTY?: boolean }; text: () => string } {
  let out = "";
  const stream = new Writable({
    write(c: Buffer, _e, done) {
      out += c.toString();
      done();
    },
  });
  return { stream, text: () => out };
}

describe("platform logger", () => {
  it("writes JSON lines with the fields given, and never the key", () => {
    const s = sink();
    const log = createLogger({ destination: s.stream, pretty: false });
    log
      .child({ reqId: "abc-1" })
      .warn({ invocationId: "inv-1", authorization: "Bearer nmb_secret" }, "failed");
    const o = JSON.parse(s.text());
    assert.equal(o.level, 40);
    assert.equal(o.msg, "failed");
    assert.equal(o.reqId, "abc-1");
    assert.equal(o.invocationId, "inv-1");
    assert.doesNotMatch(s.text(), /nmb_secret/);
  });

  it("is human-readable in a terminal", () => {
    const s = sink();
    s.stream.isTTY = true;
    const log = createLogger({ destination: s.stream });
    messageLog(log)("nimbus: writing records failed: disk full");
    assert.match(s.text(), /^\d\d:\d\d:\d\d\.\d{3} WARN {2}writing records failed: disk full/);
    assert.match(prettyLine('{"level":30,"time":0,"msg":"hi","fn":"a"}'), /INFO {2}hi {2}fn=a/);
    assert.equal(prettyLine("not json"), "not json");
  });

  it("gives unique request ids and quiet levels for reads", () => {
    assert.notEqual(requestId(), requestId());
    assert.equal(requestLevel("GET", 200), "debug");
    assert.equal(requestLevel("POST", 200), "info");
    assert.equal(requestLevel("GET", 401), "warn");
    assert.equal(requestLevel("GET", 500), "error");
  });
});
