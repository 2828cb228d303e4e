/** Every area of the conformance suite, registered in one {@link Suite}. Runs inside a function. */
import { encodingTests } from "./areas/encoding.ts";
import { blobFormTests, headersTests, requestTests, responseTests } from "./areas/fetch.ts";
import { eventsTests, streamsTests } from "./areas/platform.ts";
import { searchParamsTests } from "./areas/searchparams.ts";
import { type UrlData, urlTests } from "./areas/url.ts";
import { type AreaResult, Suite } from "./harness.ts";

/** Runs every area; `data` holds the upstream data files that were found. */
export function runSuite(data: UrlData): Promise<Record<string, AreaResult>> {
  const t = new Suite();
  urlTests(t, data);
  searchParamsTests(t);
  encodingTests(t);
  headersTests(t);
  requestTests(t);
  responseTests(t);
  blobFormTests(t);
  streamsTests(t);
  eventsTests(t);
  return t.run();
}
