// A cron job (Workers style): runs at 03:00 Paris time every day; a run missed while the
// server was down runs once at start. Lambda handlers get EventBridge's scheduled event.
//
//   npx nimbus deploy examples/events/nightly.ts
export const config = { schedule: "0 3 * * *", timezone: "Europe/Paris", missedTicks: "run-once" };

export default {
  async fetch(): Promise<Response> {
    return new Response("nightly job: runs on its schedule");
  },
  async scheduled(controller: { cron: string; scheduledTime: number }): Promise<void> {
    console.log(`nightly run for ${new Date(controller.scheduledTime).toISOString()} (${controller.cron})`);
  },
};
