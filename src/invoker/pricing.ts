/**
 * The price plan usage is charged by. The default is AWS Lambda's published x86 list price
 * (us-east-1, first tier): $0.20 per million requests and $0.0000166667 per GB-second.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { NimbusError } from "../errors.ts";

/** A price plan. */
export interface PricePlan {
  /** USD per request. @default 0.0000002 */
  perRequest: number;
  /** USD per GB-second. @default 0.0000166667 */
  perGbSecond: number;
  currency: string;
  name: string;
}

/** AWS Lambda x86 list price. */
export const LAMBDA_X86_PRICE: PricePlan = {
  perRequest: 0.0000002,
  perGbSecond: 0.0000166667,
  currency: "USD",
  name: "aws-lambda-x86-list",
};

/** Loads `<dataDir>/prices.json` if present (fields override the default plan). */
export function loadPricePlan(dataDir: string): PricePlan {
  const file = join(dataDir, "prices.json");
  if (!existsSync(file)) return LAMBDA_X86_PRICE;
  let raw: Partial<PricePlan>;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new NimbusError("NIMBUS_BAD_CONFIG", `${file} is not valid JSON: ${(err as Error).message}`);
  }
  const plan = { ...LAMBDA_X86_PRICE, name: "custom", ...raw };
  for (const k of ["perRequest", "perGbSecond"] as const) {
    if (typeof plan[k] !== "number" || plan[k] < 0) {
      throw new NimbusError("NIMBUS_BAD_CONFIG", `${file}: '${k}' must be a non-negative number (USD).`);
    }
  }
  return plan;
}

/** Cost of a usage row under a plan. */
export function cost(plan: PricePlan, requests: number, gbSeconds: number): number {
  return requests * plan.perRequest + gbSeconds * plan.perGbSecond;
}
