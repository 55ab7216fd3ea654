// Activation quantization in the evaluator, on a small fixture (tiny-random qwen3_moe, 3 layers,
// 8 experts): only layer 1's experts are quantized — W8A8-FP8 with static per-expert input
// scales, or NVFP4 W4A4 with input global scales — written through the real format writer and
// read back by the evaluator. Its KLD with activation quantization must differ from the
// weight-only KLD and equal a direct computation: the reference model's forward with layer 1's
// MoE block computed here by hand in float64 (dequantized weights from the checkpoint, input
// scales read from the checkpoint's tensors, activations rounded by the float64 grid-search
// references of libs/quant/test/act-quant-ref.ts), then llama.cpp's KLD from both logits. Also:
// which scale each linear call resolves to (gate/up combined, layer-max), and GPT-OSS's fused
// gate_up_proj / down_proj stored per expert.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type QuantizedModule, readQuantizedCheckpoint, writeQuantizedCheckpoint } from "@moeq/formats";
import { buildSpec, extractRoleMatrix, loadModel, packTarget, type RawConfig, weightRoles } from "@moeq/models";
import { inputScaleFp8, nvfp4GlobalScale, nvfp4InputScale, quantizeFp8, quantizeNvfp4 } from "@moeq/quant";
import { openCheckpoint } from "@moeq/safetensors";
import type { Tensor } from "@moeq/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refNvfp4, refStatic } from "../../../libs/quant/test/act-quant-ref.ts";
import { ActivationPlanError, combineInputQuantization, planActivations } from "../src/activations.ts";
import { evaluateCheckpoint } from "../src/evaluate.ts";

const here = dirname(fileURLToPath(import.meta.url));
const modelDir = join(here, "..", "..", "..", "..", "shared", "fixtures", "tiny-random", "qwen3_moe");
const QL = 1; // the quantized layer
const EXPERT_W = new RegExp(`^model\\.layers\\.${QL}\\.mlp\\.experts\\.(\\d+)\\.(gate|up|down)_proj\\.weight$`);

const randomIds = (n: number, vocab: number, seed: number) => {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
};

let out: string;
const N = 4;
const T = 32;
let vocab = 0;
let evalIds: Int32Array;
/** |input| max per expert and w13/w2 on calibration windows (other ids than the evaluation's) */
const absmax = new Map<string, number>();

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), "moeq-eval-acts-"));
  const ref = loadModel(modelDir);
  try {
    vocab = ref.spec.vocabSize;
    evalIds = randomIds(N * T, vocab, 11);
    const eng = ref.engine();
    eng.setLinearHook((call, x) => {
      if (call.layer === QL && call.module === "experts") {
        const k = `${call.expert}/${call.projection === "down_proj" ? "w2" : "w13"}`;
        let m = absmax.get(k) ?? 0;
        for (const v of x) m = Math.max(m, Math.abs(v));
        absmax.set(k, m);
      }
      return x;
    });
    await eng.forward(randomIds(4 * T, vocab, 5), 4, T);
  } finally {
    ref.close();
  }
}, 60_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

type Scheme = "w8a8-fp8" | "nvfp4";

/** Layer QL's experts quantized with `scheme` (input scales from the calibration absmax), other tensors as they are. */
function writeCheckpoint(scheme: Scheme): string {
  const dir = join(out, scheme);
  const src = openCheckpoint(modelDir);
  try {
    const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
    const targets = src.names().filter((n) => EXPERT_W.test(n));
    const modules: QuantizedModule[] = targets.map((n) => {
      const [, e, p] = EXPERT_W.exec(n)!;
      const [rows, cols] = src.entry(n).shape as [number, number];
      const range = { absmax: absmax.get(`${e}/${p === "down" ? "w2" : "w13"}`)!, source: "calibration" as const };
      const name = n.slice(0, -".weight".length);
      if (scheme === "w8a8-fp8")
        return {
          name,
          weight: quantizeFp8(src.f32(n), rows, cols, { strategy: "tensor", name: n }),
          inputScale: inputScaleFp8(range),
          inputRange: range,
        };
      // gate and up share one weight global scale (vLLM fuses them)
      const sib = (q: string) => src.f32(n.replace(/(gate|up)_proj/, q));
      let amax = 0;
      for (const w of p === "down" ? [src.f32(n)] : [sib("gate_proj"), sib("up_proj")])
        for (const v of w) amax = Math.max(amax, Math.abs(v));
      return {
        name,
        weight: quantizeNvfp4(src.f32(n), rows, cols, {
          globalScale: nvfp4GlobalScale(amax, "compressed-tensors"),
          name: n,
        }),
        inputScale: nvfp4InputScale(range, "compressed-tensors"),
        inputRange: range,
      };
    });
    const passthrough = new Map<string, Tensor>();
    for (const n of src.names()) if (!targets.includes(n)) passthrough.set(n, src.tensor(n));
    writeQuantizedCheckpoint(
      dir,
      "compressed-tensors",
      { modules, passthrough, modelConfig: config },
      { sourceDir: modelDir },
    );
  } finally {
    src.close();
  }
  return dir;
}

const scalar = (t: Tensor) => new DataView(t.data.buffer, t.data.byteOffset, 4).getFloat32(0, true);

/** Mean KLD of the reference vs the reference with layer QL's MoE computed by hand, as served. */
async function directMeanKld(dir: string, scheme: Scheme): Promise<number> {
  const ref = loadModel(modelDir);
  const ck = readQuantizedCheckpoint(dir);
  try {
    const eng = ref.engine();
    const H = ref.spec.hiddenSize;
    const V = ref.spec.vocabSize;
    const moe = ref.spec.layers[QL]!.mlp;
    if (moe.kind !== "moe") throw new Error("layer is not MoE");
    const I = moe.experts.intermediate;
    const prefix = `model.layers.${QL}.mlp.experts`;
    const w = (e: number, p: string) => ck.dequantize(`${prefix}.${e}.${p}`).weight;
    // the checkpoint's own activation scale tensors, decoded here (f32 little-endian)
    const inScale = (e: number, p: string) =>
      scalar(ck.tensor(`${prefix}.${e}.${p}.${scheme === "nvfp4" ? "input_global_scale" : "input_scale"}`));
    const fq = (x: Float64Array, cols: number, s: number) =>
      scheme === "nvfp4" ? refNvfp4(x, 1, cols, s) : refStatic(x, s);
    // gate/up: one served input scale (FP8: the larger scale; NVFP4: the smaller global scale)
    const w13Scale = (e: number) =>
      scheme === "nvfp4"
        ? Math.min(inScale(e, "gate_proj"), inScale(e, "up_proj"))
        : Math.max(inScale(e, "gate_proj"), inScale(e, "up_proj"));

    const seq = eng.sequences(N, T);
    let h = eng.embed(evalIds, seq);
    for (let L = 0; L < ref.spec.layers.length; L++) {
      const a = await eng.attention(L, h, seq);
      if (L !== QL) {
        h = eng.finishLayer(a.residual, await eng.moe(L, a.x));
        continue;
      }
      const rt = await eng.router(L, a.x);
      const y = new Float64Array(N * T * H);
      for (let r = 0; r < N * T; r++)
        for (let j = 0; j < rt.topK; j++) {
          const e = rt.indices[r * rt.topK + j]!;
          const wt = rt.weights[r * rt.topK + j]!;
          const xq = fq(Float64Array.from(a.x.subarray(r * H, (r + 1) * H)), H, w13Scale(e));
          const [G, U, D] = [w(e, "gate_proj"), w(e, "up_proj"), w(e, "down_proj")];
          const act = new Float64Array(I);
          for (let i = 0; i < I; i++) {
            let g = 0;
            let u = 0;
            for (let c = 0; c < H; c++) {
              g += G[i * H + c]! * xq[c]!;
              u += U[i * H + c]! * xq[c]!;
            }
            act[i] = Math.fround((g / (1 + Math.exp(-g))) * u);
          }
          const aq = fq(act, I, inScale(e, "down_proj"));
          for (let c = 0; c < H; c++) {
            let s = 0;
            for (let i = 0; i < I; i++) s += D[c * I + i]! * aq[i]!;
            y[r * H + c] += wt * s;
          }
        }
      h = eng.finishLayer(a.residual, Float32Array.from(y));
    }
    const lq = await eng.logits(eng.finalNorm(h));
    const lr = (await eng.forward(evalIds, N, T)).logits;
    let sum = 0;
    let n = 0;
    const logSoftmax = (l: Float32Array, o: number) => {
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, l[o + v]!);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(l[o + v]! - m);
      return (v: number) => l[o + v]! - m - Math.log(z);
    };
    for (let b = 0; b < N; b++)
      for (let t = 0; t < T - 1; t++) {
        const o = (b * T + t) * V;
        const lp = logSoftmax(lr, o);
        const lqq = logSoftmax(lq, o);
        for (let v = 0; v < V; v++) sum += Math.exp(lp(v)) * (lp(v) - lqq(v));
        n++;
      }
    return sum / n;
  } finally {
    ck.close();
    ref.close();
  }
}

const evaluate = (dir: string, activations: "quantized" | "weights-only") =>
  evaluateCheckpoint({
    referenceDir: modelDir,
    quantizedDir: dir,
    texts: `random:${N}x${T}`,
    seed: 0,
    batchWindows: N,
    windows: { n: N, seqLen: T, ids: evalIds },
    activations,
  });

describe("evaluator: activations quantized as the checkpoint states", () => {
  it.each(["w8a8-fp8", "nvfp4"] as const)(
    "%s: KLD with activation quantization differs from weight-only and equals the direct one-layer computation",
    async (scheme) => {
      const dir = writeCheckpoint(scheme);
      const withActs = await evaluate(dir, "quantized");
      const weightsOnly = await evaluate(dir, "weights-only");
      const direct = await directMeanKld(dir, scheme);
      const a = withActs.kld.kld.mean;
      const wo = weightsOnly.kld.kld.mean;
      expect(withActs.activations.mode).toBe("quantized");
      expect(withActs.activations.modules).toEqual({ [scheme === "nvfp4" ? "nvfp4" : "fp8-tensor"]: 24 });
      expect(withActs.activations.summary).toMatch(
        scheme === "nvfp4"
          ? /^NVFP4 .* on the inputs of 24 quantized modules/
          : /^FP8 e4m3 static per tensor \(input_scale\) on the inputs of 24 quantized modules/,
      );
      expect(weightsOnly.activations.summary).toMatch(/^weights only \(requested\)/);
      // f32 BLAS sums vs the float64 sums here: a few ulps in the logits
      expect(Math.abs(a - direct), `evaluator ${a} vs direct ${direct}`).toBeLessThan(1e-6 * direct);
      expect(Math.abs(a - wo), `with activations ${a} vs weight-only ${wo}`).toBeGreaterThan(0.05 * wo);
      expect(a).toBeGreaterThan(wo);
    },
    120_000,
  );
});

describe("which scale a linear call gets", () => {
  it("gate/up share the larger FP8 scale (smaller NVFP4 global scale); layer-max takes the layer's extreme; non-quantized linears get none", () => {
    const dir = join(out, "w8a8-fp8");
    const ck = readQuantizedCheckpoint(dir);
    try {
      const { spec } = buildSpec(ck.config as RawConfig, dir);
      const p = `model.layers.${QL}.mlp.experts`;
      const scaleOf = (m: string) => scalar(ck.tensor(`${m}.input_scale`));
      const call = (e: number | null, projection: "gate_proj" | "up_proj" | "down_proj", weight: string) =>
        ({ weight, layer: QL, module: e === null ? "attention" : "experts", expert: e, projection }) as const;
      const perExpert = planActivations(ck, spec);
      const layerMax = planActivations(ck, spec, { expertInputScales: "layer-max" });
      for (const e of [0, 5]) {
        const w13 = Math.max(scaleOf(`${p}.${e}.gate_proj`), scaleOf(`${p}.${e}.up_proj`));
        expect(perExpert.resolve(call(e, "up_proj", `${p}.${e}.up_proj.weight`))).toEqual({
          kind: "fp8-tensor",
          scale: w13,
        });
        expect(perExpert.resolve(call(e, "down_proj", `${p}.${e}.down_proj.weight`))).toEqual({
          kind: "fp8-tensor",
          scale: scaleOf(`${p}.${e}.down_proj`),
        });
      }
      const downs = Array.from({ length: 8 }, (_, e) => scaleOf(`${p}.${e}.down_proj`));
      expect(new Set(downs).size).toBeGreaterThan(1); // per-expert scales really differ here
      expect(layerMax.resolve(call(3, "down_proj", `${p}.3.down_proj.weight`))).toEqual({
        kind: "fp8-tensor",
        scale: Math.max(...downs),
      });
      expect(perExpert.resolve(call(null, "up_proj", `model.layers.${QL}.self_attn.q_proj.weight`))).toBeNull();
      expect(perExpert.treatment.unsupported).toEqual([]);
    } finally {
      ck.close();
    }
  });
  it("combining: nulls with scales, or two schemes, on one input is an ActivationPlanError naming it", () => {
    expect(combineInputQuantization("x", [null, null])).toBeNull();
    expect(() => combineInputQuantization("L1 E2 w13", [{ kind: "fp8-token" }, null])).toThrow(ActivationPlanError);
    expect(() =>
      combineInputQuantization("L1 E2 w13", [{ kind: "fp8-token" }, { kind: "nvfp4", globalScale: 1 }]),
    ).toThrow(/L1 E2 w13: modules sharing an input disagree \(fp8-token, nvfp4\)/);
    expect(
      combineInputQuantization("x", [
        { kind: "nvfp4", globalScale: 3 },
        { kind: "nvfp4", globalScale: 2 },
      ]),
    ).toEqual({ kind: "nvfp4", globalScale: 2 });
  });
});

describe("fused expert tensors (GPT-OSS gate_up_proj / down_proj stored per expert)", () => {
  it("the one fused gate_up call gets the combined gate/up scale, down its own; the evaluation runs both ways", async () => {
    const fixture = join(here, "..", "..", "..", "..", "shared", "fixtures", "tiny-random", "gpt_oss");
    const dir = join(out, "gpt-oss-w8a8");
    const m = loadModel(fixture);
    const scales = new Map<string, number>();
    try {
      const eng = m.engine();
      const roles = weightRoles(m.spec).filter((r) => r.module === "experts" && r.expert !== null);
      const fused = new Set(roles.map((r) => r.tensor));
      const modules: QuantizedModule[] = roles.map((r) => {
        const name = packTarget(m.spec, r).module;
        const w = extractRoleMatrix(r, eng.weights.get(r.tensor), m.source.tensor(r.tensor).shape);
        const [rows, cols] = r.shape as [number, number];
        // distinct per expert and per projection, so that combining gate/up is visible
        const scale = Math.fround(
          (0.01 * (r.expert! + 1) * { gate_proj: 1, up_proj: 2, down_proj: 3 }[r.projection as "gate_proj"]) / 4,
        );
        scales.set(name, scale);
        return {
          name,
          weight: quantizeFp8(w, rows, cols, { strategy: "tensor", name }),
          inputScale: scale,
          inputRange: { source: "calibration" },
        };
      });
      const passthrough = new Map<string, Tensor>();
      for (const n of m.source.names()) if (!fused.has(n)) passthrough.set(n, m.source.tensor(n));
      const config = JSON.parse(readFileSync(join(fixture, "config.json"), "utf8")) as Record<string, unknown>;
      writeQuantizedCheckpoint(
        dir,
        "compressed-tensors",
        { modules, passthrough, modelConfig: config },
        { sourceDir: fixture },
      );
    } finally {
      m.close();
    }
    const ck = readQuantizedCheckpoint(dir);
    try {
      const { spec } = buildSpec(ck.config as RawConfig, dir);
      const plan = planActivations(ck, spec);
      const p = "model.layers.0.mlp.experts";
      const call = (projection: "gate_proj" | "down_proj", weight: string) =>
        ({ weight, layer: 0, module: "experts", expert: 1, projection }) as const;
      expect(plan.resolve(call("gate_proj", `${p}.gate_up_proj`))).toEqual({
        kind: "fp8-tensor",
        scale: scales.get(`${p}.1.up_proj`),
      });
      expect(plan.resolve(call("down_proj", `${p}.down_proj`))).toEqual({
        kind: "fp8-tensor",
        scale: scales.get(`${p}.1.down_proj`),
      });
    } finally {
      ck.close();
    }
    const ev = (activations: "quantized" | "weights-only") =>
      evaluateCheckpoint({
        referenceDir: fixture,
        quantizedDir: dir,
        texts: "random:2x16",
        seed: 1,
        batchWindows: 2,
        activations,
      });
    const [a, wo] = [await ev("quantized"), await ev("weights-only")];
    expect(a.activations.modules).toEqual({ "fp8-tensor": a.quantizedModules });
    expect(Math.abs(a.kld.kld.mean - wo.kld.kld.mean)).toBeGreaterThan(0.01 * wo.kld.kld.mean);
  }, 120_000);
});
