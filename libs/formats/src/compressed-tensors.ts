// compressed-tensors checkpoints (quant_method "compressed-tensors"), as vLLM and SGLang load
// them: pack-quantized (int4/int8), float-quantized (FP8), nvfp4-pack-quantized and
// mxfp4-pack-quantized, one config group per distinct scheme. Layouts: shared reference
// formats.md §1 (compressed-tensors 0.18).
import { dequantizeFp8, dequantizeMxfp4, dequantizeNvfp4, fp8ScaleTile } from "@moeq/quant";
import { packCols, packNibbles, packRows, type Tensor, unpackCols, unpackNibbles, unpackRows } from "@moeq/tensor";
import { FormatError } from "./errors.ts";
import { checkFp8, checkMxfp4, checkNvfp4 } from "./float-checks.ts";
import { checkFusedTensorScales } from "./fused-scales.ts";
import { scalarScale } from "./input-scales.ts";
import { checkIntModule, intDequant } from "./int-checks.ts";
import { deriveUnquantizedModules } from "./module-names.ts";
import { maybeTensor, type QuantizedReader, type ReadContext } from "./reader-types.ts";
import {
  asF32,
  asI32,
  asI64,
  exactDtype,
  expectTensor,
  floatTensor,
  i32Tensor,
  i64Tensor,
  u8Tensor,
} from "./tensors.ts";
import type {
  DequantizedModule,
  Format,
  FormatInput,
  FormatOutput,
  InputQuantization,
  QuantizedModule,
} from "./types.ts";

const NAME = "compressed-tensors";

type Args = Record<string, unknown>;
interface Group {
  format: string;
  weights: Args;
  input_activations: Args | null;
  members: string[];
}

const intArgs = (bits: number, symmetric: boolean, groupSize: number, actorder: boolean): Args => ({
  num_bits: bits,
  type: "int",
  symmetric,
  strategy: groupSize === -1 ? "channel" : "group",
  group_size: groupSize === -1 ? null : groupSize,
  dynamic: false,
  actorder: actorder ? "group" : null,
  observer: "minmax",
});

const floatArgs = (bits: number, strategy: string, extra: Args = {}): Args => ({
  num_bits: bits,
  type: "float",
  symmetric: true,
  strategy,
  group_size: null,
  dynamic: false,
  actorder: null,
  observer: "minmax",
  ...extra,
});

const writeModule = (m: QuantizedModule, out: Map<string, Tensor>, notes: string[]): Omit<Group, "members"> => {
  const w = m.weight;
  const p = m.name;
  switch (w.kind) {
    case "int": {
      const lay = checkIntModule(NAME, p, w);
      const r = w.result;
      out.set(
        `${p}.weight_packed`,
        i32Tensor(packRows(r.codes, w.rows, w.cols, lay.bits), [w.rows, Math.ceil((w.cols * lay.bits) / 32)]),
      );
      const sd = exactDtype(r.scales, ["BF16", "F16", "F32"]);
      if (sd === "F32") notes.push(`${p}: scales are not exact in bf16/f16, stored as F32`);
      out.set(`${p}.weight_scale`, floatTensor(r.scales, sd, [w.rows, lay.nGroups]));
      out.set(`${p}.weight_shape`, i64Tensor([w.rows, w.cols], [2]));
      if (!r.symmetric) {
        out.set(
          `${p}.weight_zero_point`,
          i32Tensor(packCols(r.zeros, w.rows, lay.nGroups, lay.bits), [
            Math.ceil((w.rows * lay.bits) / 32),
            lay.nGroups,
          ]),
        );
      }
      if (lay.needsGIdx) out.set(`${p}.weight_g_idx`, i32Tensor(Int32Array.from(r.gIdx), [w.cols]));
      return {
        format: "pack-quantized",
        weights: intArgs(lay.bits, r.symmetric, lay.groupSize, lay.needsGIdx),
        input_activations: null,
      };
    }
    case "fp8": {
      checkFp8(NAME, p, w);
      out.set(`${p}.weight`, u8Tensor(w.codes, [w.rows, w.cols], "F8_E4M3"));
      const shape = w.strategy === "tensor" ? [1] : [...w.scaleShape];
      out.set(`${p}.weight_scale`, floatTensor(w.scales, "F32", shape));
      if (m.inputScale !== undefined) out.set(`${p}.input_scale`, floatTensor([m.inputScale], "F32", [1]));
      return {
        format: "float-quantized",
        weights: floatArgs(8, w.strategy, w.block ? { block_structure: [...w.block] } : {}),
        input_activations: m.inputScale === undefined ? null : floatArgs(8, "tensor"),
      };
    }
    case "nvfp4": {
      checkNvfp4(NAME, p, w);
      if (w.convention !== "compressed-tensors") {
        throw new FormatError({
          format: NAME,
          reason: `${p}: NVFP4 result uses the ${w.convention} tensor scale; quantize with convention "compressed-tensors" for this format`,
        });
      }
      out.set(`${p}.weight_packed`, u8Tensor(packNibbles(w.codes), [w.rows, w.cols / 2]));
      out.set(`${p}.weight_scale`, u8Tensor(w.blockScales, [w.rows, w.cols / 16], "F8_E4M3"));
      out.set(`${p}.weight_global_scale`, floatTensor([w.globalScale], "F32", [1]));
      if (m.inputScale !== undefined) out.set(`${p}.input_global_scale`, floatTensor([m.inputScale], "F32", [1]));
      const group = { group_size: 16 };
      return {
        format: "nvfp4-pack-quantized",
        weights: floatArgs(4, "tensor_group", group),
        input_activations:
          m.inputScale === undefined ? null : floatArgs(4, "tensor_group", { ...group, dynamic: "local" }),
      };
    }
    case "mxfp4": {
      checkMxfp4(NAME, p, w);
      out.set(`${p}.weight_packed`, u8Tensor(packNibbles(w.codes), [w.rows, w.cols / 2]));
      out.set(`${p}.weight_scale`, u8Tensor(w.scales, [w.rows, w.cols / 32]));
      return {
        format: "mxfp4-pack-quantized",
        weights: floatArgs(4, "group", { group_size: 32 }),
        input_activations: null,
      };
    }
  }
};

const write = (input: FormatInput): FormatOutput => {
  const tensors = new Map<string, Tensor>(input.passthrough);
  const notes: string[] = [];
  const groups = new Map<string, Group>();
  const nvfp4Scales: Array<{ name: string; scale: number }> = [];
  for (const m of input.modules) {
    if (m.weight.kind === "nvfp4") nvfp4Scales.push({ name: m.name, scale: m.weight.globalScale });
    const g = writeModule(m, tensors, notes);
    if (m.bias) tensors.set(`${m.name}.bias`, m.bias);
    const key = groupKey(g);
    const have = groups.get(key);
    if (have) have.members.push(m.name);
    else groups.set(key, { ...g, members: [m.name] });
  }
  checkFusedTensorScales(NAME, nvfp4Scales);
  const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  return {
    tensors,
    config: { ...input.modelConfig, quantization_config: quantizationConfig(groups, ignore) },
    extraFiles: new Map(),
    ignore,
    notes,
  };
};

const groupKey = (g: Omit<Group, "members">) => JSON.stringify([g.format, g.weights, g.input_activations]);

const quantizationConfig = (groups: ReadonlyMap<string, Group>, ignore: readonly string[]) => {
  const single = groups.size === 1;
  const configGroups: Record<string, unknown> = {};
  let i = 0;
  for (const g of groups.values()) {
    configGroups[`group_${i++}`] = {
      // One scheme: every Linear not ignored. Several: each group lists its modules by name.
      targets: single ? ["Linear"] : [...g.members].sort(),
      weights: g.weights,
      input_activations: g.input_activations,
      output_activations: null,
      format: g.format,
    };
  }
  const formats = new Set([...groups.values()].map((g) => g.format));
  return {
    quant_method: "compressed-tensors",
    format: formats.size === 1 ? [...formats][0] : "mixed-precision",
    quantization_status: "compressed",
    config_groups: configGroups,
    ignore: [...ignore],
    kv_cache_scheme: null,
    sparsity_config: {},
    transform_config: {},
  };
};

/**
 * The whole model's config from parts written separately (one per layer): a part's groups list
 * their members, or ["Linear"] when the part had one group (then its members are all its
 * modules); groups of equal scheme are joined in order of first appearance, as one write would.
 */
const mergeParts: NonNullable<Format["mergeParts"]> = (parts) => {
  const groups = new Map<string, Group>();
  for (const part of parts) {
    const qc = part.config.quantization_config as { config_groups: Record<string, Group & { targets: string[] }> };
    const own = Object.values(qc.config_groups);
    for (const g of own) {
      const members = own.length === 1 ? [...part.modules] : g.targets;
      const key = groupKey(g);
      const have = groups.get(key);
      if (have) have.members.push(...members);
      else
        groups.set(key, {
          format: g.format,
          weights: g.weights,
          input_activations: g.input_activations,
          members: [...members],
        });
    }
  }
  const first = parts[0]!;
  return {
    config: { ...first.config, quantization_config: quantizationConfig(groups, first.ignore) },
    extraFiles: new Map(first.extraFiles),
  };
};

// ---- reading

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

interface ConfigGroup {
  targets?: string[];
  weights?: Args;
  input_activations?: Args | null;
}

const configGroupFor = (qc: Readonly<Record<string, unknown>>, module: string): ConfigGroup | undefined => {
  const groups = (qc.config_groups ?? {}) as Record<string, ConfigGroup>;
  let byClass: ConfigGroup | undefined;
  for (const g of Object.values(groups)) {
    for (const t of g.targets ?? []) {
      if (t.startsWith("re:")) {
        // vLLM matches "re:" targets with Python's re.match: anchored at the start only.
        if (new RegExp(`^(?:${t.slice(3)})`).test(module)) return g;
      } else if (t === module || new RegExp(`(^|\\.)${escapeRe(t)}$`).test(module)) return g;
      else if (/^[A-Z]/.test(t)) byClass ??= g;
    }
  }
  return byClass;
};

const groupFor = (qc: Readonly<Record<string, unknown>>, module: string): Args | undefined =>
  configGroupFor(qc, module)?.weights;

/**
 * The scheme's input_activations as vLLM's compressed-tensors loader would run them: NVFP4 W4A4
 * (input_global_scale), static FP8 per tensor (input_scale), dynamic FP8 per token or per token
 * group; anything else (int8 activations, per-channel FP8 inputs) is reported as unsupported.
 */
const ctInputQuantization = (ctx: ReadContext, p: string): InputQuantization | null => {
  const gscale = scalarScale(NAME, ctx.source, `${p}.input_global_scale`);
  if (gscale !== undefined) return { kind: "nvfp4", globalScale: gscale };
  const scale = scalarScale(NAME, ctx.source, `${p}.input_scale`);
  const a = configGroupFor(ctx.quantizationConfig, p)?.input_activations;
  if (scale !== undefined && (!a || (a.type === "float" && Number(a.num_bits) === 8)))
    return { kind: "fp8-tensor", scale };
  if (!a) return null;
  const what = `${p}: input_activations ${JSON.stringify(a)}`;
  if (a.type !== "float")
    return { kind: "unsupported", reason: `${what} (${String(a.type)} activations are not emulated)` };
  if (Number(a.num_bits) === 4) return { kind: "unsupported", reason: `${what} without ${p}.input_global_scale` };
  if (Number(a.num_bits) !== 8 || !a.dynamic)
    return { kind: "unsupported", reason: `${what} without ${p}.input_scale` };
  if (a.strategy === "token") return { kind: "fp8-token" };
  if (a.strategy === "group" && Number(a.group_size) > 0)
    return { kind: "fp8-token-group", groupSize: Number(a.group_size) };
  return { kind: "unsupported", reason: `${what} (dynamic ${String(a.strategy)} scales are not emulated)` };
};

const SUFFIXES = [
  "weight_packed",
  "weight_scale",
  "weight_shape",
  "weight_zero_point",
  "weight_g_idx",
  "weight_global_scale",
  "input_global_scale",
  "input_scale",
];

export const readCompressedTensors = (ctx: ReadContext): QuantizedReader => {
  const src = ctx.source;
  const modules = new Set<string>();
  for (const n of src.names()) {
    if (n.endsWith(".weight_packed")) modules.add(n.slice(0, -".weight_packed".length));
    else if (n.endsWith(".weight_scale")) {
      const m = n.slice(0, -".weight_scale".length);
      if (src.has(`${m}.weight`)) modules.add(m);
    }
  }
  const owned = (t: string) => {
    const dot = t.lastIndexOf(".");
    const m = t.slice(0, dot);
    const suffix = t.slice(dot + 1);
    return modules.has(m) && (SUFFIXES.includes(suffix) || (suffix === "weight" && src.has(`${m}.weight_scale`)));
  };
  const dequantize = (p: string): DequantizedModule => {
    if (!modules.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    const packed = maybeTensor(src, `${p}.weight_packed`);
    const args = groupFor(ctx.quantizationConfig, p);
    if (packed?.dtype === "I32") {
      const shapeT = expectTensor(
        NAME,
        `${p}.weight_shape`,
        maybeTensor(src, `${p}.weight_shape`),
        ["I64", "I32"],
        [2],
      );
      const [rows, cols] = shapeT.dtype === "I64" ? asI64(shapeT) : Array.from(asI32(shapeT));
      const bits = Number(args?.num_bits ?? 4);
      if (bits !== 4 && bits !== 8)
        throw new FormatError({ format: NAME, reason: `${p}: ${bits}-bit pack-quantized is not supported` });
      expectTensor(NAME, `${p}.weight_packed`, packed, ["I32"], [rows!, Math.ceil((cols! * bits) / 32)]);
      const scaleT = expectTensor(NAME, `${p}.weight_scale`, maybeTensor(src, `${p}.weight_scale`), [
        "F32",
        "F16",
        "BF16",
      ]);
      if (scaleT.shape.length !== 2 || scaleT.shape[0] !== rows) {
        throw new FormatError({
          format: NAME,
          reason: `${p}.weight_scale has shape [${scaleT.shape}], expected [${rows}, groups]`,
        });
      }
      const nGroups = scaleT.shape[1]!;
      const scales = asF32(scaleT);
      const codes = unpackRows(asI32(packed), rows!, cols!, bits);
      const zpT = maybeTensor(src, `${p}.weight_zero_point`);
      const zeros = zpT
        ? unpackCols(
            asI32(
              expectTensor(NAME, `${p}.weight_zero_point`, zpT, ["I32"], [Math.ceil((rows! * bits) / 32), nGroups]),
            ),
            rows!,
            nGroups,
            bits,
          )
        : new Uint8Array(rows! * nGroups).fill(1 << (bits - 1));
      const gT = maybeTensor(src, `${p}.weight_g_idx`);
      const gs = Number(args?.group_size ?? -1) > 0 ? Number(args?.group_size) : Math.ceil(cols! / nGroups);
      const gIdx = gT
        ? asI32(expectTensor(NAME, `${p}.weight_g_idx`, gT, ["I32"], [cols!]))
        : Int32Array.from({ length: cols! }, (_, c) => (nGroups === 1 ? 0 : Math.floor(c / gs)));
      const out = new Float32Array(rows! * cols!);
      for (let r = 0; r < rows!; r++) {
        for (let c = 0; c < cols!; c++) {
          const g = gIdx[c]!;
          if (g < 0 || g >= nGroups)
            throw new FormatError({ format: NAME, reason: `${p}.weight_g_idx[${c}] = ${g} is out of range` });
          out[r * cols! + c] = intDequant(codes[r * cols! + c]!, zeros[r * nGroups + g]!, scales[r * nGroups + g]!);
        }
      }
      return { name: p, rows: rows!, cols: cols!, weight: out };
    }
    if (packed?.dtype === "U8") {
      const rows = packed.shape[0]!;
      const cols = packed.shape[1]! * 2;
      const codes = unpackNibbles(packed.data, rows * cols);
      const gsT = maybeTensor(src, `${p}.weight_global_scale`);
      if (gsT) {
        const bs = expectTensor(
          NAME,
          `${p}.weight_scale`,
          maybeTensor(src, `${p}.weight_scale`),
          ["F8_E4M3"],
          [rows, cols / 16],
        );
        const g = asF32(expectTensor(NAME, `${p}.weight_global_scale`, gsT, ["F32"]))[0]!;
        return { name: p, rows, cols, weight: dequantizeNvfp4(codes, bs.data, g, "compressed-tensors", rows, cols) };
      }
      const sc = expectTensor(
        NAME,
        `${p}.weight_scale`,
        maybeTensor(src, `${p}.weight_scale`),
        ["U8", "F8_E8M0"],
        [rows, cols / 32],
      );
      return { name: p, rows, cols, weight: dequantizeMxfp4(codes, sc.data, rows, cols) };
    }
    const wT = expectTensor(NAME, `${p}.weight`, maybeTensor(src, `${p}.weight`), ["F8_E4M3"]);
    if (wT.shape.length !== 2) throw new FormatError({ format: NAME, reason: `${p}.weight is not 2-D` });
    const [rows, cols] = wT.shape as [number, number];
    const sT = expectTensor(NAME, `${p}.weight_scale`, maybeTensor(src, `${p}.weight_scale`), ["F32", "BF16", "F16"]);
    const scales = asF32(sT);
    let tile: readonly [number, number];
    if (scales.length === 1) tile = fp8ScaleTile("tensor", rows, cols, null);
    else if (sT.shape.length === 2 && sT.shape[0] === rows && sT.shape[1] === 1)
      tile = fp8ScaleTile("channel", rows, cols, null);
    else {
      const bs = args?.block_structure as number[] | undefined;
      if (
        !bs ||
        sT.shape.length !== 2 ||
        sT.shape[0] !== Math.ceil(rows / bs[0]!) ||
        sT.shape[1] !== Math.ceil(cols / bs[1]!)
      ) {
        throw new FormatError({
          format: NAME,
          reason: `${p}.weight_scale shape [${sT.shape}] matches no FP8 strategy for [${rows}, ${cols}]`,
        });
      }
      tile = [bs[0]!, bs[1]!];
    }
    return { name: p, rows, cols, weight: dequantizeFp8(wT.data, scales, rows, cols, tile) };
  };
  const inputQuantization = (p: string): InputQuantization | null => {
    if (!modules.has(p))
      throw new FormatError({ format: NAME, reason: `module "${p}" is not quantized in this checkpoint` });
    return ctInputQuantization(ctx, p);
  };
  return { modules: [...modules].sort(), dequantize, owns: owned, inputQuantization };
};

export const compressedTensors: Format = {
  name: NAME,
  describe: {
    summary:
      "compressed-tensors: int4/int8 pack-quantized (sym/asym, g_idx), FP8 float-quantized (tensor/channel/block, static input_scale), nvfp4-pack-quantized, mxfp4-pack-quantized",
    accepts: ["int", "fp8", "nvfp4", "mxfp4"],
    files: [],
    loaders: "vLLM, SGLang (quant_method compressed-tensors); transformers with compressed-tensors installed",
  },
  write,
  mergeParts,
};
