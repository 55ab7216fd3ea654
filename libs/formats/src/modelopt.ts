// NVIDIA ModelOpt HF export (quant_method "modelopt" + hf_quant_config.json): FP8 per tensor
// (W8A8 static) and NVFP4 (weight_scale_2 multiplies, the reciprocal of compressed-tensors'
// global scale). Shared reference formats.md §3.
import { dequantizeFp8, dequantizeNvfp4, fp8ScaleTile } from "@moeq/quant";
import { packNibbles, type Tensor, unpackNibbles } from "@moeq/tensor";
import { FormatError } from "./errors.ts";
import { checkFp8, checkNvfp4 } from "./float-checks.ts";
import { checkFusedTensorScales } from "./fused-scales.ts";
import { scalarScale } from "./input-scales.ts";
import { deriveUnquantizedModules } from "./module-names.ts";
import { maybeTensor, type QuantizedReader, type ReadContext } from "./reader-types.ts";
import { asF32, expectTensor, floatTensor, u8Tensor } from "./tensors.ts";
import type { DequantizedModule, Format, FormatInput, FormatOutput, InputQuantization } from "./types.ts";

const NAME = "modelopt";

const write = (input: FormatInput): FormatOutput => {
  const tensors = new Map<string, Tensor>(input.passthrough);
  const kinds = new Set(input.modules.map((m) => m.weight.kind));
  if (kinds.size !== 1 || !(kinds.has("fp8") || kinds.has("nvfp4"))) {
    throw new FormatError({
      format: NAME,
      reason: `writes FP8 or NVFP4 models (one of them), got ${[...kinds].join(", ") || "nothing"}`,
    });
  }
  const withInput = input.modules.filter((m) => m.inputScale !== undefined).length;
  if (withInput !== 0 && withInput !== input.modules.length) {
    throw new FormatError({
      format: NAME,
      reason: `${withInput} of ${input.modules.length} modules have input scales; give all or none`,
    });
  }
  const staticActs = withInput > 0;
  let quantAlgo: string;
  const nvfp4Scales: Array<{ name: string; scale: number }> = [];
  for (const m of input.modules) {
    const w = m.weight;
    const p = m.name;
    if (w.kind === "fp8") {
      checkFp8(NAME, p, w);
      if (w.strategy !== "tensor") {
        throw new FormatError({
          format: NAME,
          reason: `${p}: ModelOpt FP8 is per tensor; got ${w.strategy} (use compressed-tensors or fp8-block)`,
        });
      }
      if (!staticActs)
        throw new FormatError({ format: NAME, reason: `${p}: ModelOpt FP8 needs a static input_scale per module` });
      tensors.set(`${p}.weight`, u8Tensor(w.codes, [w.rows, w.cols], "F8_E4M3"));
      tensors.set(`${p}.weight_scale`, floatTensor(w.scales, "F32", []));
      tensors.set(`${p}.input_scale`, floatTensor([m.inputScale!], "F32", []));
    } else if (w.kind === "nvfp4") {
      checkNvfp4(NAME, p, w);
      if (w.convention !== "modelopt") {
        throw new FormatError({
          format: NAME,
          reason: `${p}: NVFP4 result uses the ${w.convention} tensor scale; quantize with convention "modelopt"`,
        });
      }
      nvfp4Scales.push({ name: p, scale: w.globalScale });
      tensors.set(`${p}.weight`, u8Tensor(packNibbles(w.codes), [w.rows, w.cols / 2]));
      tensors.set(`${p}.weight_scale`, u8Tensor(w.blockScales, [w.rows, w.cols / 16], "F8_E4M3"));
      tensors.set(`${p}.weight_scale_2`, floatTensor([w.globalScale], "F32", []));
      if (staticActs) tensors.set(`${p}.input_scale`, floatTensor([m.inputScale!], "F32", []));
    }
    if (m.bias) tensors.set(`${p}.bias`, m.bias);
  }
  checkFusedTensorScales(NAME, nvfp4Scales);
  if (kinds.has("fp8")) quantAlgo = "FP8";
  else quantAlgo = staticActs ? "NVFP4" : "W4A16_NVFP4";
  const exclude = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  const quantization: Record<string, unknown> = {
    quant_algo: quantAlgo,
    kv_cache_quant_algo: null,
    exclude_modules: exclude,
  };
  if (quantAlgo !== "FP8") quantization.group_size = 16;
  const producer = { name: "moeq", version: "0.1.0" };
  const weights: Record<string, unknown> =
    quantAlgo === "FP8"
      ? { dynamic: false, num_bits: 8, type: "float" }
      : { dynamic: false, num_bits: 4, type: "float", group_size: 16 };
  const group: Record<string, unknown> = { weights, targets: ["Linear"] };
  if (quantAlgo === "FP8") group.input_activations = { dynamic: false, num_bits: 8, type: "float" };
  if (quantAlgo === "NVFP4") group.input_activations = { dynamic: false, num_bits: 4, type: "float", group_size: 16 };
  const quantizationConfig = {
    config_groups: { group_0: group },
    ignore: exclude,
    quant_algo: quantAlgo,
    producer,
    quant_method: "modelopt",
  };
  return {
    tensors,
    config: { ...input.modelConfig, quantization_config: quantizationConfig },
    extraFiles: new Map([["hf_quant_config.json", `${JSON.stringify({ producer, quantization }, null, 2)}\n`]]),
    ignore: exclude,
    notes: [],
  };
};

export const readModelopt = (ctx: ReadContext): QuantizedReader => {
  const src = ctx.source;
  const side = (ctx.sideConfig?.quantization ?? {}) as Record<string, unknown>;
  const algo = String(side.quant_algo ?? ctx.quantizationConfig.quant_algo ?? "");
  if (!["FP8", "NVFP4", "W4A16_NVFP4"].includes(algo)) {
    throw new FormatError({ format: NAME, reason: `quant_algo "${algo}" is not supported (FP8, NVFP4, W4A16_NVFP4)` });
  }
  const nvfp4 = algo !== "FP8";
  const modules = src
    .names()
    .filter((n) => n.endsWith(nvfp4 ? ".weight_scale_2" : ".weight_scale"))
    .map((n) => n.slice(0, n.lastIndexOf(".")))
    .filter((m) => src.has(`${m}.weight`))
    .sort();
  const set = new Set(modules);
  const owns = (t: string) => {
    const dot = t.lastIndexOf(".");
    return (
      set.has(t.slice(0, dot)) && ["weight", "weight_scale", "weight_scale_2", "input_scale"].includes(t.slice(dot + 1))
    );
  };
  const dequantize = (p: string): DequantizedModule => {
    if (!set.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    if (nvfp4) {
      const w = expectTensor(NAME, `${p}.weight`, maybeTensor(src, `${p}.weight`), ["U8"]);
      if (w.shape.length !== 2) throw new FormatError({ format: NAME, reason: `${p}.weight is not 2-D` });
      const rows = w.shape[0]!;
      const cols = w.shape[1]! * 2;
      const bs = expectTensor(
        NAME,
        `${p}.weight_scale`,
        maybeTensor(src, `${p}.weight_scale`),
        ["F8_E4M3"],
        [rows, cols / 16],
      );
      const s2 = asF32(
        expectTensor(NAME, `${p}.weight_scale_2`, maybeTensor(src, `${p}.weight_scale_2`), ["F32", "BF16", "F16"]),
      );
      if (s2.length !== 1) throw new FormatError({ format: NAME, reason: `${p}.weight_scale_2 is not a scalar` });
      return {
        name: p,
        rows,
        cols,
        weight: dequantizeNvfp4(unpackNibbles(w.data, rows * cols), bs.data, s2[0]!, "modelopt", rows, cols),
      };
    }
    const w = expectTensor(NAME, `${p}.weight`, maybeTensor(src, `${p}.weight`), ["F8_E4M3"]);
    if (w.shape.length !== 2) throw new FormatError({ format: NAME, reason: `${p}.weight is not 2-D` });
    const [rows, cols] = w.shape as [number, number];
    const s = asF32(
      expectTensor(NAME, `${p}.weight_scale`, maybeTensor(src, `${p}.weight_scale`), ["F32", "BF16", "F16"]),
    );
    if (s.length === 1)
      return {
        name: p,
        rows,
        cols,
        weight: dequantizeFp8(w.data, s, rows, cols, fp8ScaleTile("tensor", rows, cols, null)),
      };
    if (s.length === rows)
      return {
        name: p,
        rows,
        cols,
        weight: dequantizeFp8(w.data, s, rows, cols, fp8ScaleTile("channel", rows, cols, null)),
      };
    throw new FormatError({ format: NAME, reason: `${p}.weight_scale has ${s.length} values; expected 1 or ${rows}` });
  };
  // FP8: input_scale multiplies like the weight's; NVFP4: input_scale = amax/2688, and vLLM's
  // ModelOpt loader quantizes with its reciprocal (input_scale_inv) as the global scale.
  const inputQuantization = (p: string): InputQuantization | null => {
    if (!set.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    if (algo === "W4A16_NVFP4") return null;
    const s = scalarScale(NAME, src, `${p}.input_scale`);
    if (s === undefined) return { kind: "unsupported", reason: `${p}: quant_algo ${algo} without ${p}.input_scale` };
    return nvfp4 ? { kind: "nvfp4", globalScale: Math.fround(1 / s) } : { kind: "fp8-tensor", scale: s };
  };
  return { modules, dequantize, owns, inputQuantization };
};

export const modelopt: Format = {
  name: NAME,
  describe: {
    summary:
      "NVIDIA ModelOpt export: FP8 per tensor with static input_scale, or NVFP4 (weight_scale_2 = amax/2688, optional input_scale)",
    accepts: ["fp8", "nvfp4"],
    files: ["hf_quant_config.json"],
    loaders: "vLLM and SGLang (quant_method modelopt / modelopt_fp4), TensorRT-LLM",
  },
  write,
};
