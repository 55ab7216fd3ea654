// Runs the GPU-vs-CPU checks of test/cuda_checks.ts without vitest (the GPU machine has Node but
// no node_modules): `node native/bench/gpu/check.ts [out.json]`. Exit 1 when any check fails.
import { renameSync, writeFileSync } from "node:fs";
import * as c from "../../test/cuda_checks.ts";
import * as o from "../../test/cuda_ops_checks.ts";
import * as st from "../../test/cuda_stats_checks.ts";
import { native } from "../../ts/index.ts";

const rows: Array<{ check: string; ok: boolean; seconds: number; detail: string }> = [];
async function run(name: string, f: () => Promise<string> | string) {
  const t0 = performance.now();
  try {
    const detail = await f();
    rows.push({ check: name, ok: true, seconds: (performance.now() - t0) / 1000, detail });
  } catch (e) {
    rows.push({
      check: name,
      ok: false,
      seconds: (performance.now() - t0) / 1000,
      detail: (e as Error).stack ?? String(e),
    });
  }
  const r = rows[rows.length - 1];
  console.log(`${r.ok ? "PASS" : "FAIL"} ${name} (${r.seconds.toFixed(2)} s): ${r.detail}`);
}

if (!native.withCuda) {
  console.error("this addon was built without CUDA");
  process.exit(2);
}
console.log(JSON.stringify(native.cudaDeviceInfo?.(0)));
await run("gemm", () => c.checkGemm(11));
await run("hessian", () => c.checkHessian(12));
await run("elementwise", () => c.checkElementwise(13));
await run("attention", () => c.checkAttention(17));
await run("row-ops", () => o.checkRowOps(18));
await run("rope", () => o.checkRope(19));
await run("decode", () => o.checkDecode());
await run("gemm-mixed", () => o.checkGemmMixed(20));
await run("deltanet", () => o.checkDeltaNet(21));
await run("ops-rejections", () => o.checkOpsRejections());
await run("gptq-oracle", () => c.checkGptqOracle());
await run("gptq-batched", () => c.checkGptqBatched(14));
await run("moe-calibrate", () => c.checkMoeCalibrate(15));
await run("moe-stats", () => st.checkMoeStats(22));
await run("rejections", () => c.checkRejections());
await run("ipc-two-process", () => c.checkIpc());
if (process.argv[2]) {
  writeFileSync(`${process.argv[2]}.tmp`, JSON.stringify(rows, null, 1));
  renameSync(`${process.argv[2]}.tmp`, process.argv[2]);
}
const failed = rows.filter((r) => !r.ok).length;
// the short table last (the details are in the lines above / the JSON)
console.log(`\n${"check".padEnd(16)} result ${"s".padStart(6)}`);
for (const r of rows)
  console.log(`${r.check.padEnd(16)} ${r.ok ? "PASS  " : "FAIL  "} ${r.seconds.toFixed(2).padStart(6)}`);
console.log(`checks: ${rows.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
