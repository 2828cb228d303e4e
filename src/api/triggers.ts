/**
 * Control API route for triggers: `GET /api/v1/triggers` (every MQTT/NATS trigger with its
 * state: connecting, connected, retrying with the last error, stopped; and its counters).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Triggers } from "../triggers/manager.ts";
import type { Auth } from "./auth.ts";

const TENANT = "default";

/** A trigger's state (`GET /api/v1/triggers`). */
export const triggerStatusSchema = {
  type: "object",
  properties: {
    function: { type: "string" },
    index: { type: "integer", description: "Position in the function's `triggers` list" },
    type: { type: "string", enum: ["mqtt", "nats"] },
    target: { type: "string", description: "Broker and topic, subject or stream" },
    state: { type: "string", enum: ["connecting", "connected", "retrying", "stopped"] },
    lastError: { type: ["string", "null"] },
    lastErrorAt: { type: ["string", "null"] },
    connectedAt: { type: ["string", "null"] },
    retries: { type: "integer", description: "Failed connection attempts in a row" },
    received: { type: "integer" },
    stored: { type: "integer", description: "Messages stored durably as async events" },
    dropped: { type: "integer", description: "Messages over the size limits or the buffer" },
    acked: {
      type: "integer",
      description:
        "MQTT QoS 1 / JetStream messages acknowledged to the broker: their event reached its terminal outcome (succeeded, dead-lettered or expired)",
    },
  },
};

/** Registers the route. */
export function registerTriggerRoutes(app: FastifyInstance, ctx: { auth: Auth; triggers: Triggers }): void {
  app.get<{ Querystring: { function?: string } }>(
    "/api/v1/triggers",
    {
      onRequest: async (req: FastifyRequest) => {
        await ctx.auth.require(req.headers.authorization, "read");
      },
      schema: {
        summary: "Every MQTT/NATS trigger with its connection state and counters",
        security: [{ bearer: [] }],
        querystring: {
          type: "object",
          properties: { function: { type: "string", maxLength: 63, description: "Only this function's" } },
        },
        response: {
          200: { type: "object", properties: { triggers: { type: "array", items: triggerStatusSchema } } },
        },
      },
    },
    async (req) => ({ triggers: ctx.triggers.list(TENANT, req.query.function) }),
  );
}
