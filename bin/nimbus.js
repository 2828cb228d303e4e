#!/usr/bin/env node
// The `nimbus` command. npm puts the project's Node 24 (the `node` devDependency) first on
// PATH for npx and npm scripts; the CLI itself is TypeScript run by Node's type stripping.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `nimbus needs Node.js 24 or newer (this is ${process.version}). Run it through npx or an npm script, which use the project's pinned Node 24.\n`,
  );
  process.exit(2);
}
const main = join(dirname(fileURLToPath(import.meta.url)), "../src/cli/main.ts");
// isolated-vm needs --no-node-snapshot in the process that loads it (the server).
if (process.argv[2] === "serve" && !process.execArgv.includes("--no-node-snapshot")) {
  const r = spawnSync(
    process.execPath,
    ["--no-node-snapshot", "--disable-warning=ExperimentalWarning", main, ...process.argv.slice(2)],
    {
      stdio: "inherit",
    },
  );
  process.exit(r.status ?? 1);
}
await import(main);
