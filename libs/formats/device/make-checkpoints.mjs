// Writes one checkpoint per format from a tiny model, plus our reader's dequantized weights
// (<name>.moeq-dequant.safetensors), for check_loaders.py to compare on the GPU machine.
// node libs/formats/device/make-checkpoints.mjs <model dir> <out dir>   (after the build)
// Input scales here come from a fixed made-up range: this checks layouts and loaders, not accuracy.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatNames, readQuantizedCheckpoint, writeQuantizedCheckpoint } from "@moeq/formats";
import { nvfp4GlobalScale, quantizeFp8, quantizeIntRtn, quantizeMxfp4, quantizeNvfp4 } from "@moeq/quant";
import { openCheckpoint, serializeSafetensors } from "@moeq/safetensors";
import { f32Tensor, fromF32, toF32 } from "@moeq/tensor";

const [modelDir, outDir] = process.argv.slice(2);
if (!modelDir || !outDir) {
  console.error("usage: make-checkpoints.mjs <model dir> <out dir>");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const src = openCheckpoint(modelDir);
const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
const gptOss = config.model_type === "gpt_oss";

// Linear weights to quantize, [out, in] f32, by module name; GPT-OSS's fused experts are split.
const linears = new Map();
const consumed = new Set();
for (const n of src.names()) {
  const attn = /^model\.layers\.\d+\.self_attn\.[qkvo]_proj\.weight$/.test(n);
  const expert = /^model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight$/.test(n);
  if ((attn && !gptOss) || expert) {
    const [rows, cols] = src.entry(n).shape;
    linears.set(n.slice(0, -7), { rows, cols, w: src.f32(n) });
    consumed.add(n);
  }
  const fused = /^(model\.layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)$/.exec(n);
  if (gptOss && fused) {
    const [E, a, b] = src.entry(n).shape; // gate_up [E, H, 2I], down [E, I, H]: x @ W
    const w = src.f32(n);
    for (let e = 0; e < E; e++) {
      const slice = (colStart, step, width) => {
        const out = new Float32Array(width * a);
        for (let r = 0; r < width; r++)
          for (let c = 0; c < a; c++) out[r * a + c] = w[e * a * b + c * b + colStart + r * step];
        return out;
      };
      if (fused[2] === "gate_up_proj") {
        linears.set(`${fused[1]}.${e}.gate_proj`, { rows: b / 2, cols: a, w: slice(0, 2, b / 2) });
        linears.set(`${fused[1]}.${e}.up_proj`, { rows: b / 2, cols: a, w: slice(1, 2, b / 2) });
      } else linears.set(`${fused[1]}.${e}.down_proj`, { rows: b, cols: a, w: slice(0, 1, b) });
    }
    consumed.add(n);
  }
}
const biasOf = (name) => {
  if (!gptOss) return undefined;
  const m = /^(.*\.experts)\.(\d+)\.(gate|up|down)_proj$/.exec(name);
  const e = Number(m[2]);
  const t = src.tensor(`${m[1]}.${m[3] === "down" ? "down" : "gate_up"}_proj_bias`);
  const all = toF32(t);
  const width = t.shape[1];
  const row = all.subarray(e * width, (e + 1) * width);
  const pick = m[3] === "down" ? row : row.filter((_, i) => i % 2 === (m[3] === "gate" ? 0 : 1));
  return fromF32(Float32Array.from(pick), t.dtype, [pick.length]);
};
const passthrough = new Map();
for (const n of src.names()) {
  if (consumed.has(n)) continue;
  if (gptOss && /experts\.(gate_up|down)_proj_bias$/.test(n)) continue;
  passthrough.set(n, src.tensor(n));
}

// The int quantizers' dequant uses the unrounded scale; decode with the stored f32 scale instead.
const intWeight = (l, bits, groupSize, symmetric) => {
  const r = quantizeIntRtn(l.w, l.rows, l.cols, { bits, groupSize, symmetric, clip: "minmax" });
  const nG = r.scales.length / l.rows;
  r.dequant = r.dequant.map((_, i) => {
    const g = Math.floor(i / l.cols) * nG + r.gIdx[i % l.cols];
    return Math.fround((r.codes[i] - r.zeros[g]) * r.scales[g]);
  });
  return { kind: "int", rows: l.rows, cols: l.cols, result: r };
};
let amax = 0;
for (const l of linears.values()) for (const v of l.w) amax = Math.max(amax, Math.abs(v));
const plans = gptOss
  ? { "gpt-oss-mxfp4": (l) => ({ weight: quantizeMxfp4(l.w, l.rows, l.cols) }) }
  : {
      "compressed-tensors": (l) => ({ weight: intWeight(l, 4, 32, true) }),
      gptq: (l) => ({ weight: intWeight(l, 4, 32, true) }),
      "gptq-v2": (l) => ({ weight: intWeight(l, 4, 32, false) }),
      modelopt: (l) => ({
        weight: quantizeNvfp4(l.w, l.rows, l.cols, {
          convention: "modelopt",
          globalScale: nvfp4GlobalScale(amax, "modelopt"),
        }),
      }),
      "fp8-block": (l) => ({ weight: quantizeFp8(l.w, l.rows, l.cols, { strategy: "block", block: [16, 16] }) }),
    };
for (const [format, plan] of Object.entries(plans)) {
  if (!formatNames.includes(format)) throw new Error(format);
  const modules = [...linears].map(([name, l]) => ({ name, ...plan(l), bias: biasOf(name) }));
  const dir = join(outDir, `${config.model_type}-${format}`);
  const res = writeQuantizedCheckpoint(
    dir,
    format,
    { modules, passthrough, modelConfig: config },
    { sourceDir: modelDir },
  );
  const ck = readQuantizedCheckpoint(dir);
  const dump = ck.quantizedModules.map((m) => {
    const d = ck.dequantize(m);
    return [`${m}.weight`, f32Tensor(d.weight, [d.rows, d.cols])];
  });
  ck.close();
  writeFileSync(`${dir}.moeq-dequant.safetensors`, serializeSafetensors(dump));
  console.log(
    JSON.stringify({ dir, format, modules: modules.length, shards: res.shards.length, notes: res.notes.length }),
  );
}
src.close();
