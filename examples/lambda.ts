// An AWS Lambda handler (API Gateway HTTP API payload 2.0): the same code runs on Lambda.
export const handler = async (event: { rawPath: string; queryStringParameters?: Record<string, string> }) => {
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ path: event.rawPath, query: event.queryStringParameters ?? {} }),
  };
};
