// Scheme × format round trips through real files: quantize a small synthetic model with the
// libs/quant quantizers, write it with writeQuantizedCheckpoint (streaming safetensors writer,
// temp dir + rename), open it with readQuantizedCheckpoint (format detected from the files),
// and require every module to dequantize bit-exactly to the quantizer's own dequant.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  gptq as gptqQuantize,
  inputScaleFp8,
  nvfp4GlobalScale,
  nvfp4InputScale,
  quantizeFp8,
  quantizeIntRtn,
  quantizeMxfp4,
  quantizeNvfp4,
  resolveExpertInputRanges,
  resolveInputRange,
  type ScaleDtype,
} from "@moeq/quant";
import { f32Tensor, fromF32, type Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import {
  type FormatName,
  type InputQuantization,
  type IntQuantized,
  type QuantizedModule,
  type QuantizedWeight,
  readQuantizedCheckpoint,
  writeQuantizedCheckpoint,
} from "../src/index.ts";
import { sameBits } from "./helpers.ts";

const root = mkdtempSync(join(tmpdir(), "moeq-formats-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const rand = (n: number, seed: number, scale: number): Float32Array => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    return scale * (2 * u - 1) * (1 + 3 * u * u);
  });
};

// The synthetic model: attention (odd o_proj shape where the format allows it) and two experts.
interface Linear {
  name: string;
  rows: number;
  cols: number;
  w: Float32Array;
}
const H = 64;
const I = 32;
const linears = (odd: boolean): Linear[] => {
  const mk = (name: string, rows: number, cols: number, seed: number) => ({
    name,
    rows,
    cols,
    w: rand(rows * cols, seed, 0.05),
  });
  const out = [
    mk("model.layers.0.self_attn.q_proj", H, H, 1),
    mk("model.layers.0.self_attn.o_proj", odd ? 37 : H, odd ? 70 : H, 2),
  ];
  for (const e of [0, 1]) {
    out.push(mk(`model.layers.0.mlp.experts.${e}.gate_proj`, I, H, 10 + e));
    out.push(mk(`model.layers.0.mlp.experts.${e}.up_proj`, I, H, 20 + e));
    out.push(mk(`model.layers.0.mlp.experts.${e}.down_proj`, H, I, 30 + e));
  }
  return out;
};

const passthrough = (): Map<string, Tensor> =>
  new Map<string, Tensor>([
    ["model.embed_tokens.weight", fromF32(rand(16 * H, 5, 1), "BF16", [16, H])],
    ["model.norm.weight", f32Tensor(rand(H, 6, 1), [H])],
    ["model.layers.0.mlp.gate.weight", fromF32(rand(2 * H, 7, 1), "BF16", [2, H])],
    ["lm_head.weight", fromF32(rand(16 * H, 8, 1), "BF16", [16, H])],
  ]);

const sourceDir = join(root, "source");
mkdirSync(sourceDir);
writeFileSync(join(sourceDir, "tokenizer.json"), '{"version":"1.0"}\n');
writeFileSync(join(sourceDir, "generation_config.json"), '{"do_sample":false}\n');

type Quantizer = (l: Linear) => Promise<QuantizedWeight> | QuantizedWeight;

// Integer quantizers round each scale to the dtype the format stores (compressed-tensors: the
// weight dtype, bf16 here; GPTQ: f16), so their dequant is what a reader decodes, bit for bit.
const rtn =
  (bits: 4 | 8, groupSize: number, symmetric: boolean, scaleDtype: ScaleDtype): Quantizer =>
  (l) => ({
    kind: "int",
    rows: l.rows,
    cols: l.cols,
    result: quantizeIntRtn(l.w, l.rows, l.cols, { bits, groupSize, symmetric, clip: "minmax", scaleDtype }),
  });

const gptqActOrder =
  (bits: 4 | 8, groupSize: number, symmetric: boolean, scaleDtype: ScaleDtype): Quantizer =>
  async (l) => {
    const h = new Float64Array(l.cols * l.cols);
    const n = 2 * l.cols;
    // Feature i scaled by 1 + i % 5 so that act-order really permutes the columns.
    const x = rand(l.cols * n, l.cols + l.rows, 1).map((v, k) => v * (1 + ((k % l.cols) % 5)));
    for (let t = 0; t < n; t++)
      for (let i = 0; i < l.cols; i++)
        for (let j = 0; j < l.cols; j++) h[i * l.cols + j] += x[t * l.cols + i]! * x[t * l.cols + j]!;
    const r = await gptqQuantize(l.w, l.rows, l.cols, h, {
      bits,
      groupSize,
      symmetric,
      actOrder: true,
      hessianWeight: n,
      scaleDtype,
    });
    const q: IntQuantized = { kind: "int", rows: l.rows, cols: l.cols, result: r };
    return q;
  };

const inputAbsmax = (name: string) => resolveInputRange(name, { tokens: 10, absmax: 2 + name.length / 10 });

interface Case {
  format: FormatName;
  scheme: string;
  odd: boolean;
  quantize: Quantizer;
  /** Attach an input scale (in the format's units) to each module. */
  input?: (name: string) => number;
  /** What the reader says about each module's activations (default: weight-only, null). */
  acts?: (m: QuantizedModule) => InputQuantization;
  /** Also check config.json / side files. */
  check?: (dir: string, config: Record<string, any>) => void;
  /** Share one NVFP4 global scale across all modules (vLLM fuses gate/up and q/k/v). */
  shared?: "ct" | "modelopt";
}

const allAmax = (odd: boolean) =>
  Math.max(...linears(odd).map((l) => l.w.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));

const cases: Case[] = [
  { format: "compressed-tensors", scheme: "w4a16 rtn g32 sym", odd: true, quantize: rtn(4, 32, true, "bf16") },
  { format: "compressed-tensors", scheme: "w8a16 rtn channel asym", odd: true, quantize: rtn(8, -1, false, "bf16") },
  {
    format: "compressed-tensors",
    scheme: "w4a16 gptq g16 asym act-order",
    odd: false,
    quantize: gptqActOrder(4, 16, false, "bf16"),
    check: (dir, c) => {
      expect(existsSync(join(dir, "model.safetensors.index.json"))).toBe(true);
      expect(c.quantization_config.config_groups.group_0.weights).toMatchObject({
        actorder: "group",
        symmetric: false,
        group_size: 16,
      });
    },
  },
  {
    format: "compressed-tensors",
    scheme: "fp8 channel",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "channel" }),
  },
  {
    format: "compressed-tensors",
    scheme: "fp8 block 16×16",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "block", block: [16, 16] }),
  },
  {
    format: "compressed-tensors",
    scheme: "w8a8-fp8 static per-expert input scales",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "tensor" }),
    input: (n) => inputScaleFp8(inputAbsmax(n)),
    acts: (m) => ({ kind: "fp8-tensor", scale: Math.fround(m.inputScale!) }),
    check: (_d, c) =>
      expect(c.quantization_config.config_groups.group_0.input_activations).toMatchObject({
        num_bits: 8,
        strategy: "tensor",
        dynamic: false,
      }),
  },
  {
    format: "compressed-tensors",
    scheme: "nvfp4 w4a4",
    odd: false,
    shared: "ct",
    quantize: (l) =>
      quantizeNvfp4(l.w, l.rows, l.cols, { globalScale: nvfp4GlobalScale(allAmax(false), "compressed-tensors") }),
    input: (n) => nvfp4InputScale(inputAbsmax(n), "compressed-tensors"),
    acts: (m) => ({ kind: "nvfp4", globalScale: Math.fround(m.inputScale!) }),
  },
  { format: "compressed-tensors", scheme: "mxfp4", odd: false, quantize: (l) => quantizeMxfp4(l.w, l.rows, l.cols) },
  {
    format: "gptq",
    scheme: "w4a16 rtn g32 sym",
    odd: false,
    quantize: rtn(4, 32, true, "f16"),
    check: (dir, c) => {
      expect(c.quantization_config).toMatchObject({
        quant_method: "gptq",
        bits: 4,
        group_size: 32,
        sym: true,
        desc_act: false,
      });
      expect(JSON.parse(readFileSync(join(dir, "quantize_config.json"), "utf8")).checkpoint_format).toBe("gptq");
    },
  },
  { format: "gptq", scheme: "w8a16 rtn channel sym", odd: false, quantize: rtn(8, -1, true, "f16") },
  {
    format: "gptq-v2",
    scheme: "w4a16 gptq g16 asym act-order",
    odd: false,
    quantize: gptqActOrder(4, 16, false, "f16"),
    check: (_d, c) =>
      expect(c.quantization_config).toMatchObject({ checkpoint_format: "gptq_v2", desc_act: true, sym: false }),
  },
  {
    format: "modelopt",
    scheme: "w8a8-fp8 static per-expert input scales",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "tensor" }),
    input: (n) => inputScaleFp8(inputAbsmax(n)),
    acts: (m) => ({ kind: "fp8-tensor", scale: Math.fround(m.inputScale!) }),
    check: (dir) => {
      const hf = JSON.parse(readFileSync(join(dir, "hf_quant_config.json"), "utf8"));
      expect(hf.quantization.quant_algo).toBe("FP8");
      expect(hf.quantization.exclude_modules).toEqual(["lm_head", "model.layers.0.mlp.gate"]);
    },
  },
  {
    format: "modelopt",
    scheme: "nvfp4 w4a4",
    odd: false,
    shared: "modelopt",
    quantize: (l) =>
      quantizeNvfp4(l.w, l.rows, l.cols, {
        convention: "modelopt",
        globalScale: nvfp4GlobalScale(allAmax(false), "modelopt"),
      }),
    input: (n) => nvfp4InputScale(inputAbsmax(n), "modelopt"),
    // ModelOpt stores amax/2688; the served global scale is its reciprocal
    acts: (m) => ({ kind: "nvfp4", globalScale: Math.fround(1 / Math.fround(m.inputScale!)) }),
    check: (dir) =>
      expect(JSON.parse(readFileSync(join(dir, "hf_quant_config.json"), "utf8")).quantization.quant_algo).toBe("NVFP4"),
  },
  {
    format: "fp8-block",
    scheme: "fp8 block 16×16 (partial edge blocks)",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "block", block: [16, 16] }),
    acts: () => ({ kind: "fp8-token-group", groupSize: 16 }),
    check: (_d, c) => expect(c.quantization_config.weight_block_size).toEqual([16, 16]),
  },
  {
    format: "fp8-block",
    scheme: "fp8 block 128×128 (one partial block per weight)",
    odd: true,
    quantize: (l) => quantizeFp8(l.w, l.rows, l.cols, { strategy: "block" }),
    acts: () => ({ kind: "fp8-token-group", groupSize: 128 }),
  },
];

describe("round trip scheme × format through files", () => {
  for (const c of cases) {
    it(`${c.format} × ${c.scheme}`, async () => {
      const ls = linears(c.odd);
      const modules: QuantizedModule[] = [];
      for (const l of ls) {
        const weight = await c.quantize(l);
        modules.push({
          name: l.name,
          weight,
          ...(c.input ? { inputScale: c.input(l.name), inputRange: { source: "calibration" as const } } : {}),
        });
      }
      const dir = join(root, `${c.format}-${c.scheme.replace(/[^a-z0-9]+/gi, "_")}`);
      const pt = passthrough();
      const written = writeQuantizedCheckpoint(
        dir,
        c.format,
        { modules, passthrough: pt, modelConfig: { model_type: "qwen3_moe" } },
        { sourceDir, maxShardBytes: 6_000 },
      );
      expect(written.shards.length).toBeGreaterThan(1); // exercises the sharded index too
      // the common path stores int scales in the format's own dtype, with nothing to note
      expect(written.notes.filter((n) => n.includes("scales are not exact"))).toEqual([]);
      expect(written.copied).toEqual(["generation_config.json", "tokenizer.json"]);
      expect(readFileSync(join(dir, "tokenizer.json"), "utf8")).toBe('{"version":"1.0"}\n');
      const ck = readQuantizedCheckpoint(dir);
      try {
        expect(ck.format).toBe(c.format);
        expect([...ck.quantizedModules].sort()).toEqual(ls.map((l) => l.name).sort());
        for (const m of modules) {
          const d = ck.dequantize(m.name);
          expect([d.rows, d.cols]).toEqual([
            ls.find((l) => l.name === m.name)!.rows,
            ls.find((l) => l.name === m.name)!.cols,
          ]);
          const want = m.weight.kind === "int" ? m.weight.result.dequant : m.weight.dequant;
          expect(sameBits(d.weight, want), `${m.name} decodes to the quantizer's dequant`).toBe(true);
          if (m.weight.kind === "int")
            expect(ck.tensor(`${m.name}.${c.format === "compressed-tensors" ? "weight_scale" : "scales"}`).dtype).toBe(
              c.format === "compressed-tensors" ? "BF16" : "F16",
            );
        }
        expect([...ck.passthroughNames].sort()).toEqual([...pt.keys()].sort());
        for (const [n, t] of pt) expect(Buffer.from(ck.tensor(n).data).equals(Buffer.from(t.data))).toBe(true);
        if (c.input) {
          for (const m of modules) {
            const n =
              c.format === "compressed-tensors" && m.weight.kind === "nvfp4" ? "input_global_scale" : "input_scale";
            expect(new Float32Array(ck.tensor(`${m.name}.${n}`).data.slice().buffer)[0]).toBe(
              Math.fround(m.inputScale!),
            );
          }
        }
        for (const m of modules) expect(ck.inputQuantization(m.name), m.name).toEqual(c.acts?.(m) ?? null);
        c.check?.(dir, ck.config as Record<string, any>);
      } finally {
        ck.close();
      }
    });
  }

  it("an expert whose input scale is a fallback is named in the notes with the reason", () => {
    const ls = linears(false).filter((l) => l.name.includes("experts"));
    const ranges = resolveExpertInputRanges(
      new Map(
        ls.map((l) => [l.name, l.name.includes("experts.1.") ? { tokens: 0, absmax: 0 } : { tokens: 5, absmax: 3 }]),
      ),
      "layer-max",
    );
    const modules: QuantizedModule[] = ls.map((l) => ({
      name: l.name,
      weight: quantizeFp8(l.w, l.rows, l.cols, { strategy: "tensor" }),
      inputScale: inputScaleFp8(ranges.get(l.name)!),
      inputRange: ranges.get(l.name)!,
    }));
    const res = writeQuantizedCheckpoint(join(root, "fallback"), "compressed-tensors", {
      modules,
      passthrough: passthrough(),
      modelConfig: {},
    });
    expect(res.notes).toHaveLength(3);
    expect(res.notes[0]).toMatch(
      /experts\.1\.gate_proj is a fallback: .*saw no calibration tokens: max input absmax over the 3 calibrated experts/,
    );
  });

  it("compressed-tensors with mixed schemes writes one config group per scheme, targets by module name", () => {
    const ls = linears(false);
    const modules: QuantizedModule[] = ls.map((l, i) => ({
      name: l.name,
      weight:
        i % 3 === 0
          ? quantizeFp8(l.w, l.rows, l.cols, { strategy: "channel" })
          : i % 3 === 1
            ? (rtn(4, 32, true, "bf16")(l) as QuantizedWeight)
            : quantizeMxfp4(l.w, l.rows, l.cols),
    }));
    const dir = join(root, "ct-mixed");
    writeQuantizedCheckpoint(dir, "compressed-tensors", { modules, passthrough: passthrough(), modelConfig: {} });
    const ck = readQuantizedCheckpoint(dir);
    try {
      const qc = ck.config.quantization_config as any;
      expect(qc.format).toBe("mixed-precision");
      expect(Object.keys(qc.config_groups)).toHaveLength(3);
      for (const m of modules) {
        const want = m.weight.kind === "int" ? m.weight.result.dequant : m.weight.dequant;
        expect(sameBits(ck.dequantize(m.name).weight, want)).toBe(true);
      }
    } finally {
      ck.close();
    }
  });

  it("gpt-oss-mxfp4: experts fuse into *_blocks/*_scales with biases, and split back per expert", () => {
    const ls = linears(false).filter((l) => l.name.includes("experts"));
    const bias = (n: number, seed: number) => fromF32(rand(n, seed, 1), "BF16", [n]);
    const modules: QuantizedModule[] = ls.map((l, i) => ({
      name: l.name,
      weight: quantizeMxfp4(l.w, l.rows, l.cols),
      bias: bias(l.rows, 100 + i),
    }));
    const dir = join(root, "gpt-oss");
    writeQuantizedCheckpoint(dir, "gpt-oss-mxfp4", {
      modules,
      passthrough: passthrough(),
      modelConfig: { model_type: "gpt_oss" },
    });
    const ck = readQuantizedCheckpoint(dir);
    try {
      expect(ck.format).toBe("gpt-oss-mxfp4");
      expect([...ck.quantizedModules].sort()).toEqual(ls.map((l) => l.name).sort());
      for (const m of modules)
        expect(sameBits(ck.dequantize(m.name).weight, m.weight.kind === "mxfp4" ? m.weight.dequant : [])).toBe(true);
      const gub = ck.tensor("model.layers.0.mlp.experts.gate_up_proj_bias");
      expect(gub.shape).toEqual([2, 2 * I]);
      // interleaved: element 2j = gate bias j, 2j+1 = up bias j (expert 1 → modules 3 and 4)
      const gate1 = modules[3]!.bias!.data;
      const up1 = modules[4]!.bias!.data;
      expect(Array.from(gub.data.subarray((2 * I + 0) * 2, (2 * I + 2) * 2))).toEqual([
        ...gate1.subarray(0, 2),
        ...up1.subarray(0, 2),
      ]);
      expect(ck.tensor("model.layers.0.mlp.experts.down_proj_bias").shape).toEqual([2, H]);
      expect(ck.passthroughNames).toContain("model.layers.0.mlp.experts.gate_up_proj_bias");
    } finally {
      ck.close();
    }
  });

  it("an unquantized checkpoint opens with no quantized modules; an unknown quant_method is a typed error", () => {
    const dir = join(root, "plain");
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "x" }));
    writeQuantizedCheckpoint(join(root, "tmp-src"), "fp8-block", {
      modules: [{ name: "a.b", weight: quantizeFp8(rand(4, 1, 1), 2, 2, { strategy: "block", block: [2, 2] }) }],
      passthrough: new Map(),
      modelConfig: {},
    });
    writeFileSync(join(dir, "model.safetensors"), readFileSync(join(root, "tmp-src", "model.safetensors")));
    const ck = readQuantizedCheckpoint(dir);
    expect(ck.format).toBe("unquantized");
    expect(ck.quantizedModules).toEqual([]);
    expect([...ck.passthroughNames].sort()).toEqual(["a.b.weight", "a.b.weight_scale_inv"]);
    ck.close();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ quantization_config: { quant_method: "awq" } }));
    expect(() => readQuantizedCheckpoint(dir)).toThrow(/quant_method "awq" is not a format moeq reads/);
  });

  it("a corrupted scale tensor is reported with the tensor name, not a crash", () => {
    const l = linears(false)[0]!;
    const dir = join(root, "corrupt");
    writeQuantizedCheckpoint(dir, "fp8-block", {
      modules: [{ name: l.name, weight: quantizeFp8(l.w, l.rows, l.cols, { strategy: "block", block: [16, 16] }) }],
      passthrough: new Map(),
      modelConfig: {},
    });
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    cfg.quantization_config.weight_block_size = [32, 32];
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const ck = readQuantizedCheckpoint(dir);
    expect(() => ck.dequantize(l.name)).toThrow(
      /model\.layers\.0\.self_attn\.q_proj\.weight_scale_inv has 16 values; blocks \[32,32\]/,
    );
    expect(() => ck.dequantize("nope")).toThrow(/module "nope" is not quantized/);
    ck.close();
  });
});
