// GPTQ checkpoints (AutoGPTQ / GPTQModel layout, vLLM `gptq` and `gptq_marlin`):
// qweight I32 [in·b/32, out] packed along the input dim, qzeros I32 [groups, out·b/32] packed
// along the output dim, scales F16 [groups, out], g_idx I32 [in]. checkpoint_format "gptq"
// (v1) stores zero−1, "gptq_v2" stores the zero itself. Shared reference formats.md §2.
import { packCols, packRows, type Tensor, unpackCols, unpackRows } from "@moeq/tensor";
import { FormatError } from "./errors.ts";
import { checkIntModule, intDequant } from "./int-checks.ts";
import { deriveUnquantizedModules } from "./module-names.ts";
import { maybeTensor, type QuantizedReader, type ReadContext } from "./reader-types.ts";
import { asF32, asI32, exactDtype, expectTensor, floatTensor, i32Tensor } from "./tensors.ts";
import type { DequantizedModule, Format, FormatInput, FormatOutput } from "./types.ts";

export type GptqVersion = "gptq" | "gptq_v2";

const transpose = (x: ArrayLike<number>, rows: number, cols: number): number[] => {
  const out = new Array<number>(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]!;
  return out;
};

const makeWrite =
  (version: GptqVersion, name: string) =>
  (input: FormatInput): FormatOutput => {
    const tensors = new Map<string, Tensor>(input.passthrough);
    const notes: string[] = [];
    let shared: { bits: number; groupSize: number; sym: boolean; descAct: boolean } | undefined;
    for (const m of input.modules) {
      const w = m.weight;
      if (w.kind !== "int") {
        throw new FormatError({ format: name, reason: `${m.name}: GPTQ stores integer weights only, got ${w.kind}` });
      }
      const lay = checkIntModule(name, m.name, w);
      const r = w.result;
      const { rows: out, cols: inp } = w;
      if ((inp * lay.bits) % 32 !== 0 || (out * lay.bits) % 32 !== 0) {
        throw new FormatError({
          format: name,
          reason: `${m.name}: shape [${out}, ${inp}] does not pack into whole 32-bit words at ${lay.bits} bits`,
        });
      }
      const cfg = { bits: lay.bits, groupSize: lay.groupSize, sym: r.symmetric, descAct: lay.needsGIdx };
      if (shared && JSON.stringify(shared) !== JSON.stringify(cfg)) {
        throw new FormatError({
          format: name,
          reason: `${m.name}: GPTQ has one quantize_config for the whole model; ${JSON.stringify(cfg)} differs from ${JSON.stringify(shared)}`,
        });
      }
      shared = cfg;
      // GPTQ's matrices are [in, out]: transpose our [out, in] codes before packing down the columns.
      const codesT = transpose(r.codes, out, inp);
      tensors.set(`${m.name}.qweight`, i32Tensor(packCols(codesT, inp, out, lay.bits), [(inp * lay.bits) / 32, out]));
      const zerosT = transpose(r.zeros, out, lay.nGroups);
      if (version === "gptq") {
        for (let i = 0; i < zerosT.length; i++) {
          if (zerosT[i] === 0) {
            throw new FormatError({
              format: name,
              reason: `${m.name}: zero point 0 cannot be stored as zero−1 in checkpoint_format gptq (v1); use gptq-v2`,
            });
          }
          zerosT[i] = zerosT[i]! - 1;
        }
      }
      tensors.set(
        `${m.name}.qzeros`,
        i32Tensor(packRows(zerosT, lay.nGroups, out, lay.bits), [lay.nGroups, (out * lay.bits) / 32]),
      );
      const scalesT = transpose(r.scales, out, lay.nGroups);
      const sd = exactDtype(scalesT, ["F16", "F32"]);
      if (sd === "F32")
        notes.push(`${m.name}: scales are not exact in f16, stored as F32 (GPTQ kernels compute in f16)`);
      tensors.set(`${m.name}.scales`, floatTensor(scalesT, sd, [lay.nGroups, out]));
      tensors.set(`${m.name}.g_idx`, i32Tensor(Int32Array.from(r.gIdx), [inp]));
      if (m.bias) tensors.set(`${m.name}.bias`, m.bias);
    }
    if (!shared) throw new FormatError({ format: name, reason: "no quantized modules to write" });
    const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
    const quantizeConfig = {
      bits: shared.bits,
      group_size: shared.groupSize,
      desc_act: shared.descAct,
      sym: shared.sym,
      static_groups: false,
      true_sequential: true,
      lm_head: false,
      quant_method: "gptq",
      checkpoint_format: version,
    };
    return {
      tensors,
      config: { ...input.modelConfig, quantization_config: { ...quantizeConfig, modules_to_not_convert: ignore } },
      extraFiles: new Map([["quantize_config.json", `${JSON.stringify(quantizeConfig, null, 2)}\n`]]),
      ignore,
      notes,
    };
  };

export const readGptq = (ctx: ReadContext): QuantizedReader => {
  const src = ctx.source;
  const cfg = { ...(ctx.sideConfig ?? {}), ...ctx.quantizationConfig };
  const version: GptqVersion = cfg.checkpoint_format === "gptq_v2" ? "gptq_v2" : "gptq";
  const bits = Number(cfg.bits ?? 4);
  const name = version === "gptq" ? "gptq" : "gptq-v2";
  if (bits !== 4 && bits !== 8)
    throw new FormatError({ format: name, reason: `quantize_config bits ${bits} is not supported (4 or 8)` });
  const modules = src
    .names()
    .filter((n) => n.endsWith(".qweight"))
    .map((n) => n.slice(0, -".qweight".length))
    .sort();
  const set = new Set(modules);
  const owns = (t: string) => {
    const dot = t.lastIndexOf(".");
    return set.has(t.slice(0, dot)) && ["qweight", "qzeros", "scales", "g_idx"].includes(t.slice(dot + 1));
  };
  const dequantize = (p: string): DequantizedModule => {
    if (!set.has(p))
      throw new FormatError({ format: name, reason: `module "${p}" is not quantized in this checkpoint` });
    const qw = expectTensor(name, `${p}.qweight`, maybeTensor(src, `${p}.qweight`), ["I32"]);
    if (qw.shape.length !== 2) throw new FormatError({ format: name, reason: `${p}.qweight is not 2-D` });
    const inp = (qw.shape[0]! * 32) / bits;
    const out = qw.shape[1]!;
    const sc = expectTensor(name, `${p}.scales`, maybeTensor(src, `${p}.scales`), ["F16", "F32", "BF16"]);
    if (sc.shape.length !== 2 || sc.shape[1] !== out) {
      throw new FormatError({ format: name, reason: `${p}.scales has shape [${sc.shape}], expected [groups, ${out}]` });
    }
    const nGroups = sc.shape[0]!;
    const qz = expectTensor(
      name,
      `${p}.qzeros`,
      maybeTensor(src, `${p}.qzeros`),
      ["I32"],
      [nGroups, (out * bits) / 32],
    );
    const gT = maybeTensor(src, `${p}.g_idx`);
    const gs = Number(cfg.group_size ?? -1);
    const gIdx = gT
      ? asI32(expectTensor(name, `${p}.g_idx`, gT, ["I32"], [inp]))
      : Int32Array.from({ length: inp }, (_, c) => (gs > 0 ? Math.floor(c / gs) : 0));
    const codes = unpackCols(asI32(qw), inp, out, bits); // [in, out]
    const zeros = unpackRows(asI32(qz), nGroups, out, bits); // [groups, out]
    const scales = asF32(sc);
    const w = new Float32Array(out * inp);
    for (let c = 0; c < inp; c++) {
      const g = gIdx[c]!;
      if (g < 0 || g >= nGroups)
        throw new FormatError({ format: name, reason: `${p}.g_idx[${c}] = ${g} is out of range` });
      for (let o = 0; o < out; o++) {
        // v1 loaders add 1 without masking (a stored 15 means 16), so do we.
        const z = version === "gptq" ? zeros[g * out + o]! + 1 : zeros[g * out + o]!;
        w[o * inp + c] = intDequant(codes[c * out + o]!, z, scales[g * out + o]!);
      }
    }
    return { name: p, rows: out, cols: inp, weight: w };
  };
  return { modules, dequantize, owns };
};

export const gptq: Format = {
  name: "gptq",
  describe: {
    summary:
      "GPTQ checkpoint_format gptq (v1: qzeros hold zero−1), int4/int8, group or channel, sym/asym, desc_act g_idx",
    accepts: ["int"],
    files: ["quantize_config.json"],
    loaders: "vLLM gptq / gptq_marlin, SGLang, transformers with gptqmodel",
  },
  write: makeWrite("gptq", "gptq"),
};

export const gptqV2: Format = {
  name: "gptq-v2",
  describe: {
    summary: "GPTQ checkpoint_format gptq_v2 (qzeros hold the zero point itself), int4/int8",
    accepts: ["int"],
    files: ["quantize_config.json"],
    loaders: "GPTQModel; vLLM reads checkpoint_format gptq_v2 [UNVERIFIED on these machines]",
  },
  write: makeWrite("gptq_v2", "gptq-v2"),
};
