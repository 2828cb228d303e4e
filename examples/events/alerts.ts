// A destination: receives a CloudEvents 1.0 report (structured mode) for every async
// invocation of another function that failed. Deploy it before async-job.ts.
//
//   npx nimbus deploy examples/events/alerts.ts
export default {
  async fetch(request: Request): Promise<Response> {
    const event = (await request.json()) as { type: string; subject: string; data: { error?: string } };
    console.log(`${event.type} for invocation ${event.subject}: ${event.data.error ?? "ok"}`);
    return new Response(null, { status: 204 });
  },
};
