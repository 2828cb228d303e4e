/** The executor contract, run on the process executor. */
import { executorContract } from "./executor-contract.ts";

executorContract("process", {
  skip: {
    cpu: "the process executor does not enforce cpuMs yet (its cgroup CPU quota throttles, it does not stop)",
  },
});
