// Bundles the moeq CLI and the six stage mains (from their built dist/) into one ESM chunk set
// under .gpu-carry/pipeline/a/b/ for the GPU machine, which has no node_modules: shared code
// (effect, nats, …) is one chunk instead of seven copies, so it fits the 64 MiB carry. The
// depth matters: the supervisor finds the checkout four directories above its module (graph.ts),
// and the CLI reads its version from ../package.json. run.sh puts stubs at each dist/main.js.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { build } from "rolldown";

const out = ".gpu-carry/pipeline/a/b";
rmSync(".gpu-carry/pipeline", { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const stages = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"];
await build({
  input: { moeq: "libs/cli/dist/main.js", ...Object.fromEntries(stages.map((s) => [s, `stages/${s}/dist/main.js`])) },
  platform: "node",
  // the addon is loaded from MOEQ_NATIVE_ADDON at run time; nats-server is on PATH
  output: { dir: out, format: "esm", minify: true, entryFileNames: "[name].mjs", chunkFileNames: "[name]-[hash].mjs" },
  logLevel: "warn",
});
copyFileSync("libs/cli/package.json", ".gpu-carry/pipeline/a/package.json");
