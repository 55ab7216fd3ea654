// DeepSeek-V3-style FP8 (quant_method "fp8"): <m>.weight F8_E4M3 and <m>.weight_scale_inv F32
// [ceil(out/br), ceil(in/bc)], which despite its name multiplies (w = fp8 · s). Loaded by
// transformers (FineGrainedFP8Config), vLLM and SGLang. Shared reference formats.md §4.
import { dequantizeFp8 } from "@moeq/quant";
import type { Tensor } from "@moeq/tensor";
import { FormatError } from "./errors.ts";
import { checkFp8 } from "./float-checks.ts";
import { scalarScale } from "./input-scales.ts";
import { deriveUnquantizedModules } from "./module-names.ts";
import { maybeTensor, type QuantizedReader, type ReadContext } from "./reader-types.ts";
import { asF32, expectTensor, floatTensor, u8Tensor } from "./tensors.ts";
import type { DequantizedModule, Format, FormatInput, FormatOutput, InputQuantization } from "./types.ts";

const NAME = "fp8-block";

const write = (input: FormatInput): FormatOutput => {
  const tensors = new Map<string, Tensor>(input.passthrough);
  let block: readonly [number, number] | undefined;
  for (const m of input.modules) {
    const w = m.weight;
    if (w.kind !== "fp8" || w.strategy !== "block" || !w.block) {
      throw new FormatError({
        format: NAME,
        reason: `${m.name}: needs FP8 weights quantized in blocks, got ${w.kind === "fp8" ? `fp8 ${w.strategy}` : w.kind}`,
      });
    }
    if (block && (block[0] !== w.block[0] || block[1] !== w.block[1])) {
      throw new FormatError({
        format: NAME,
        reason: `${m.name}: block [${w.block}] differs from [${block}]; weight_block_size is one per model`,
      });
    }
    if (m.inputScale !== undefined) {
      throw new FormatError({
        format: NAME,
        reason: `${m.name}: this format quantizes activations dynamically; it has no place for a static input scale`,
      });
    }
    block = w.block;
    checkFp8(NAME, m.name, w);
    tensors.set(`${m.name}.weight`, u8Tensor(w.codes, [w.rows, w.cols], "F8_E4M3"));
    tensors.set(`${m.name}.weight_scale_inv`, floatTensor(w.scales, "F32", [...w.scaleShape]));
    if (m.bias) tensors.set(`${m.name}.bias`, m.bias);
  }
  if (!block) throw new FormatError({ format: NAME, reason: "no quantized modules to write" });
  const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  const quantizationConfig: Record<string, unknown> = {
    quant_method: "fp8",
    fmt: "e4m3",
    activation_scheme: "dynamic",
    weight_block_size: [...block],
  };
  // vLLM reads `ignored_layers`, transformers `modules_to_not_convert`; both only when present.
  if (ignore.length > 0) {
    quantizationConfig.ignored_layers = ignore;
    quantizationConfig.modules_to_not_convert = ignore;
  }
  return {
    tensors,
    config: { ...input.modelConfig, quantization_config: quantizationConfig },
    extraFiles: new Map(),
    ignore,
    notes: [],
  };
};

export const readFp8Block = (ctx: ReadContext): QuantizedReader => {
  const src = ctx.source;
  const wbs = ctx.quantizationConfig.weight_block_size as number[] | null | undefined;
  const modules = src
    .names()
    .filter((n) => n.endsWith(".weight_scale_inv"))
    .map((n) => n.slice(0, -".weight_scale_inv".length))
    .filter((m) => src.has(`${m}.weight`))
    .sort();
  const set = new Set(modules);
  const owns = (t: string) => {
    const dot = t.lastIndexOf(".");
    return set.has(t.slice(0, dot)) && ["weight", "weight_scale_inv", "input_scale"].includes(t.slice(dot + 1));
  };
  const dequantize = (p: string): DequantizedModule => {
    if (!set.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    const w = expectTensor(NAME, `${p}.weight`, maybeTensor(src, `${p}.weight`), ["F8_E4M3"]);
    if (w.shape.length !== 2) throw new FormatError({ format: NAME, reason: `${p}.weight is not 2-D` });
    const [rows, cols] = w.shape as [number, number];
    const tile: [number, number] = wbs ? [wbs[0]!, wbs[1]!] : [rows, cols];
    const sT = expectTensor(NAME, `${p}.weight_scale_inv`, maybeTensor(src, `${p}.weight_scale_inv`), [
      "F32",
      "BF16",
      "F16",
    ]);
    const expect = Math.ceil(rows / tile[0]) * Math.ceil(cols / tile[1]);
    const s = asF32(sT);
    if (s.length !== expect) {
      throw new FormatError({
        format: NAME,
        reason: `${p}.weight_scale_inv has ${s.length} values; blocks [${tile}] over [${rows}, ${cols}] need ${expect}`,
      });
    }
    return { name: p, rows, cols, weight: dequantizeFp8(w.data, s, rows, cols, tile) };
  };
  // activation_scheme "dynamic" (what DeepSeek-V3 and our writer declare): per token and per
  // weight_block_size[1] input columns, as vLLM's and transformers' block-FP8 linears quantize them.
  const scheme = ctx.quantizationConfig.activation_scheme ?? "dynamic";
  const inputQuantization = (p: string): InputQuantization | null => {
    if (!set.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    const s = scalarScale(NAME, src, `${p}.input_scale`);
    if (scheme === "static" || s !== undefined)
      return s === undefined
        ? { kind: "unsupported", reason: `${p}: activation_scheme static without ${p}.input_scale` }
        : { kind: "fp8-tensor", scale: s };
    if (scheme !== "dynamic")
      return { kind: "unsupported", reason: `${p}: activation_scheme ${JSON.stringify(scheme)}` };
    return wbs ? { kind: "fp8-token-group", groupSize: wbs[1]! } : { kind: "fp8-token" };
  };
  return { modules, dequantize, owns, inputQuantization };
};

export const fp8Block: Format = {
  name: NAME,
  describe: {
    summary:
      "DeepSeek-V3 FP8 blocks: weight F8_E4M3 + weight_scale_inv F32 per [br, bc] block (partial edge blocks), dynamic activations",
    accepts: ["fp8"],
    files: [],
    loaders:
      "transformers FineGrainedFP8Config (verified, dequantize=True), vLLM and SGLang quant_method fp8 [UNVERIFIED here]",
  },
  write,
};
