/** The executor contract, run on the isolate executor. */
import { executorContract } from "./executor-contract.ts";

executorContract("isolate");
