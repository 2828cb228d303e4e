/**
 * The conformance suite as a function: POST the upstream data files as JSON, get back the
 * result of every area. The same file is deployed on both executors.
 */
import { runSuite } from "./suite.ts";

export default {
  async fetch(request: Request): Promise<Response> {
    const data = request.method === "POST" ? await request.json() : {};
    return Response.json(await runSuite(data));
  },
};
