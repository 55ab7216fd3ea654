#!/usr/bin/env node
// A calibration policy in its own process, speaking moeq-policy/1 (docs/calibration.md) with
// nothing but Node's standard library: routed tokens weigh 1, every other token FLOOR, i.e. the
// built-in mix:FLOOR written independently. Run by the router-override stage as
// `external:/abs/path/policy.mjs [--floor 0.25] [--bad-size]`.
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";

const args = process.argv.slice(2);
const floorAt = args.indexOf("--floor");
const floor = floorAt >= 0 ? Number(args[floorAt + 1]) : 0.25;
const badSize = args.includes("--bad-size");

const readI32 = (t) => {
  const b = readFileSync(t.path);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

process.stdout.write(`${JSON.stringify({ protocol: "moeq-policy/1", name: `floor-${floor}` })}\n`);

for await (const line of createInterface({ input: process.stdin })) {
  const req = JSON.parse(line);
  try {
    const { rows, experts, topK } = req;
    const idx = readI32(req.tensors.indices);
    if (idx.length !== rows * topK) throw new Error(`indices: ${idx.length} values, expected ${rows * topK}`);
    const w = new Float32Array(rows * experts).fill(floor);
    for (let t = 0; t < rows; t++) for (let j = 0; j < topK; j++) w[t * experts + idx[t * topK + j]] = 1;
    const bytes = new Uint8Array(w.buffer);
    writeFileSync(req.out.path, badSize ? bytes.subarray(0, bytes.length - 4) : bytes);
    process.stderr.write(`layer ${req.layer}: ${rows} tokens × ${experts} experts (${req.routing})\n`);
    process.stdout.write(`${JSON.stringify({ id: req.id, ok: true })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ id: req.id, ok: false, error: e.message })}\n`);
  }
}
