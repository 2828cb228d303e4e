import assert from "node:assert/strict";
import { it } from "node:test";
import { validateConfig } from "../build/config.ts";
import { redactConfig } from "./routes.ts";

it("a trigger's broker password never leaves the API; the stored config keeps it", () => {
  const config = validateConfig({
    triggers: [
      { type: "mqtt", url: "mqtt://127.0.0.1:1883", topic: "a/#", username: "u", password: "s3cret" },
    ],
  });
  const shown = redactConfig(config);
  assert.doesNotMatch(JSON.stringify(shown), /s3cret/);
  assert.match(JSON.stringify(shown), /"password":"\*\*\*"/);
  assert.match(JSON.stringify(config), /s3cret/);
  const plain = validateConfig({});
  assert.equal(redactConfig(plain), plain);
});
