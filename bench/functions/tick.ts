// Bench target: a scheduled Workers module that scales to zero between ticks (1 s idle timeout).
export const config = { schedule: "*/15 * * * * *", idleTimeout: "1s" };
export default {
  async fetch(): Promise<Response> {
    return new Response("ok");
  },
  async scheduled(): Promise<void> {},
};
