// Benchmark (a command, not a test): node libs/safetensors/bench/bench.ts [--gib 4] [--dir /tmp]
// 1. Streams a sharded synthetic checkpoint of N GiB with createCheckpointWriter and times it
//    against `cp -r` of the same files on the same disk (target: ≥ 0.8× cp's throughput).
// 2. Opens it and touches one tensor, and does the same on a 1024× smaller checkpoint with the
//    same tensor count (target: a few ms, and not proportional to size: < 5× the small one).
// Exits 1 when a target is missed. Needs the built package (npm run build).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createCheckpointWriter, openCheckpoint } from "@moeq/safetensors";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const GIB = Number(arg("gib", "4"));
const root = mkdtempSync(join(arg("dir", "/tmp"), "moeq-st-bench-"));
const TENSORS = 64;

interface Spec {
  name: string;
  dtype: "BF16";
  shape: number[];
}
function plan(totalBytes: number): Spec[] {
  const rows = Math.max(1, Math.floor(totalBytes / TENSORS / 2 / 1024));
  return Array.from({ length: TENSORS }, (_, i) => ({
    name: `model.layers.${i >> 3}.mlp.experts.${i & 7}.down_proj.weight`,
    dtype: "BF16",
    shape: [rows, 1024],
  }));
}

// Both timings start from a clean page cache state (sync first) and end when the bytes are on
// disk (sync included): otherwise whichever runs second pays for the other's writeback.
const sync = () => {
  if (spawnSync("sync").status !== 0) throw new Error("sync failed");
};

function writeCheckpoint(dir: string, specs: Spec[], maxShardBytes: number, chunk: Uint8Array): number {
  sync();
  const t0 = performance.now();
  const w = createCheckpointWriter(dir, specs, { maxShardBytes });
  // one reusable buffer per tensor size: the model is never held in memory
  for (const s of specs) w.write(s.name, chunk.subarray(0, s.shape[0] * s.shape[1] * 2));
  w.finish({ "config.json": "{}" });
  sync();
  return (performance.now() - t0) / 1000;
}

function timeCp(src: string, dst: string): number {
  sync();
  const t0 = performance.now();
  const r = spawnSync("cp", ["-r", src, dst]);
  if (r.status !== 0) throw new Error(`cp failed: ${r.stderr}`);
  sync();
  return (performance.now() - t0) / 1000;
}

function openTouch(dir: string): { ms: number; value: number } {
  const t0 = performance.now();
  const c = openCheckpoint(dir);
  const names = c.names();
  const t = c.tensor(names[names.length >> 1]);
  const value = t.data[t.data.length >> 1] + t.data[0];
  const ms = performance.now() - t0;
  c.close();
  return { ms, value };
}

const bigBytes = GIB * 2 ** 30;
const big = plan(bigBytes);
const perTensor = big[0].shape[0] * 1024 * 2;
const chunk = new Uint8Array(perTensor);
for (let i = 0; i < chunk.length; i += 4096) chunk[i] = (i >> 12) & 0xff; // not all zeros
const shardBytes = Math.ceil(bigBytes / 4);

let failed = false;
try {
  // write and cp alternate twice and the best of each is compared
  const writes: number[] = [];
  const cps: number[] = [];
  for (let round = 0; round < 2; round++) {
    const ck = join(root, `ck${round}`);
    writes.push(writeCheckpoint(ck, big, shardBytes, chunk));
    cps.push(timeCp(ck, join(root, `cp${round}`)));
    rmSync(join(root, `cp${round}`), { recursive: true, force: true });
    if (round === 0) rmSync(ck, { recursive: true, force: true });
  }
  const gb = (TENSORS * perTensor) / 1e9;
  const w = Math.min(...writes);
  const c = Math.min(...cps);
  const writeRatio = c / w;
  console.log(
    `write ${gb.toFixed(2)} GB: ${(gb / w).toFixed(2)} GB/s (best of ${writes.map((x) => x.toFixed(2)).join(", ")} s)`,
  );
  console.log(`cp -r same files: ${(gb / c).toFixed(2)} GB/s (best of ${cps.map((x) => x.toFixed(2)).join(", ")} s)`);
  console.log(`write / cp throughput ratio: ${writeRatio.toFixed(3)} (target ≥ 0.8)`);
  if (writeRatio < 0.8) failed = true;

  const small = join(root, "small");
  writeCheckpoint(small, plan(bigBytes / 1024), Math.ceil(bigBytes / 1024 / 4), chunk);
  const bigDir = join(root, "ck1");
  sync();
  openTouch(bigDir); // warm the module code paths, not the data
  const runs = 5;
  const bigMs = Array.from({ length: runs }, () => openTouch(bigDir).ms).sort((a, b) => a - b)[runs >> 1];
  const smallMs = Array.from({ length: runs }, () => openTouch(small).ms).sort((a, b) => a - b)[runs >> 1];
  const openRatio = bigMs / smallMs;
  console.log(
    `open + touch one tensor, ${gb.toFixed(2)} GB (${TENSORS} tensors, 4 shards): ${bigMs.toFixed(2)} ms (median of ${runs})`,
  );
  console.log(
    `open + touch one tensor, ${(gb / 1024).toFixed(4)} GB (same tensors and shards): ${smallMs.toFixed(2)} ms`,
  );
  console.log(`open time ratio big/small for 1024× the bytes: ${openRatio.toFixed(2)} (target < 5, and < 50 ms)`);
  if (openRatio >= 5 || bigMs >= 50) failed = true;
} finally {
  rmSync(root, { recursive: true, force: true });
}
console.log(failed ? "FAIL: a target was missed" : "PASS");
process.exit(failed ? 1 : 0);
