// GPT-OSS MXFP4 (quant_method "mxfp4"): experts fused per layer as transformers' GptOss and
// vLLM load them — gate_up_proj_blocks U8 [E, 2I, H/32, 16] with gate rows at even and up rows
// at odd indices, gate_up_proj_scales U8 [E, 2I, H/32], down_proj_blocks [E, H, I/32, 16],
// down_proj_scales [E, H, I/32]; low nibble first, value = e2m1 · 2^(scale−127).
// Shared reference formats.md §4 (transformers integrations/mxfp4.py).
import { dequantizeMxfp4, type Mxfp4Quantized } from "@moeq/quant";
import { type DType, dtypeBytes, packNibbles, type Tensor, unpackNibbles } from "@moeq/tensor";
import { FormatError } from "./errors.ts";
import { checkMxfp4 } from "./float-checks.ts";
import { deriveUnquantizedModules, parseExpertModule } from "./module-names.ts";
import { maybeTensor, type QuantizedReader, type ReadContext } from "./reader-types.ts";
import { expectTensor } from "./tensors.ts";
import type { DequantizedModule, Format, FormatInput, FormatOutput, QuantizedModule } from "./types.ts";

const NAME = "gpt-oss-mxfp4";

interface Expert {
  gate?: QuantizedModule;
  up?: QuantizedModule;
  down?: QuantizedModule;
}

const mx = (m: QuantizedModule): Mxfp4Quantized => {
  if (m.weight.kind !== "mxfp4") {
    throw new FormatError({
      format: NAME,
      reason: `${m.name}: GPT-OSS stores MXFP4 experts only, got ${m.weight.kind}`,
    });
  }
  checkMxfp4(NAME, m.name, m.weight);
  return m.weight;
};

/** Concatenate per-expert biases [n] into [E, n], optionally interleaving two of them. */
const stackBias = (name: string, parts: Array<Tensor[]>, rowLen: number): Tensor => {
  const dtype: DType = parts[0]![0]!.dtype;
  const size = dtypeBytes(dtype);
  const e = parts.length;
  const width = parts[0]!.length;
  const out = new Uint8Array(e * rowLen * width * size);
  parts.forEach((ts, ei) => {
    ts.forEach((t, k) => {
      if (t.dtype !== dtype || t.data.byteLength !== rowLen * size) {
        throw new FormatError({
          format: NAME,
          reason: `${name}: expert ${ei} bias has dtype ${t.dtype} and ${t.data.byteLength} bytes`,
        });
      }
      for (let j = 0; j < rowLen; j++) {
        out.set(t.data.subarray(j * size, (j + 1) * size), ((ei * rowLen + j) * width + k) * size);
      }
    });
  });
  return { dtype, shape: [e, rowLen * width], data: out };
};

const write = (input: FormatInput): FormatOutput => {
  const tensors = new Map<string, Tensor>(input.passthrough);
  const layers = new Map<string, Map<number, Expert>>();
  for (const m of input.modules) {
    const e = parseExpertModule(m.name);
    if (!e)
      throw new FormatError({
        format: NAME,
        reason: `${m.name}: only experts ("<...>.experts.E.{gate,up,down}_proj") are MXFP4 in GPT-OSS`,
      });
    if (m.inputScale !== undefined)
      throw new FormatError({ format: NAME, reason: `${m.name}: MXFP4 here is weight-only; no input scales` });
    const layer = layers.get(e.prefix) ?? new Map<number, Expert>();
    layers.set(e.prefix, layer);
    const ex = layer.get(e.expert) ?? {};
    ex[e.proj === "gate_proj" ? "gate" : e.proj === "up_proj" ? "up" : "down"] = m;
    layer.set(e.expert, ex);
  }
  if (layers.size === 0) throw new FormatError({ format: NAME, reason: "no quantized experts to write" });
  for (const [prefix, layer] of layers) {
    const E = layer.size;
    let dims: { I: number; H: number } | undefined;
    const gu: Uint8Array[] = [];
    const gus: Uint8Array[] = [];
    const dn: Uint8Array[] = [];
    const dns: Uint8Array[] = [];
    const guBias: Tensor[][] = [];
    const dnBias: Tensor[][] = [];
    for (let e = 0; e < E; e++) {
      const ex = layer.get(e);
      if (!ex?.gate || !ex.up || !ex.down) {
        throw new FormatError({
          format: NAME,
          reason: `${prefix}.${e}: gate_proj, up_proj and down_proj must all be given (experts 0..${E - 1})`,
        });
      }
      const g = mx(ex.gate);
      const u = mx(ex.up);
      const d = mx(ex.down);
      const I = g.rows;
      const H = g.cols;
      dims ??= { I, H };
      if (u.rows !== I || u.cols !== H || d.rows !== H || d.cols !== I || dims.I !== I || dims.H !== H) {
        throw new FormatError({
          format: NAME,
          reason: `${prefix}.${e}: shapes gate [${g.rows}, ${g.cols}], up [${u.rows}, ${u.cols}], down [${d.rows}, ${d.cols}] do not form one [I=${dims.I}, H=${dims.H}] expert`,
        });
      }
      const rowB = H / 2;
      const rowS = H / 32;
      const blocks = new Uint8Array(2 * I * rowB);
      const scales = new Uint8Array(2 * I * rowS);
      const gp = packNibbles(g.codes);
      const upk = packNibbles(u.codes);
      for (let j = 0; j < I; j++) {
        blocks.set(gp.subarray(j * rowB, (j + 1) * rowB), 2 * j * rowB);
        blocks.set(upk.subarray(j * rowB, (j + 1) * rowB), (2 * j + 1) * rowB);
        scales.set(g.scales.subarray(j * rowS, (j + 1) * rowS), 2 * j * rowS);
        scales.set(u.scales.subarray(j * rowS, (j + 1) * rowS), (2 * j + 1) * rowS);
      }
      gu.push(blocks);
      gus.push(scales);
      dn.push(packNibbles(d.codes));
      dns.push(d.scales);
      const biases = [ex.gate.bias, ex.up.bias, ex.down.bias].filter((b) => b !== undefined).length;
      if (biases !== 0 && biases !== 3)
        throw new FormatError({
          format: NAME,
          reason: `${prefix}.${e}: give biases for all three projections or none`,
        });
      if (biases === 3) {
        guBias.push([ex.gate.bias!, ex.up.bias!]);
        dnBias.push([ex.down.bias!]);
      }
    }
    const { I, H } = dims!;
    const cat = (parts: Uint8Array[]) => {
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
      return out;
    };
    tensors.set(`${prefix}.gate_up_proj_blocks`, { dtype: "U8", shape: [E, 2 * I, H / 32, 16], data: cat(gu) });
    tensors.set(`${prefix}.gate_up_proj_scales`, { dtype: "U8", shape: [E, 2 * I, H / 32], data: cat(gus) });
    tensors.set(`${prefix}.down_proj_blocks`, { dtype: "U8", shape: [E, H, I / 32, 16], data: cat(dn) });
    tensors.set(`${prefix}.down_proj_scales`, { dtype: "U8", shape: [E, H, I / 32], data: cat(dns) });
    if (guBias.length === E && E > 0) {
      tensors.set(`${prefix}.gate_up_proj_bias`, stackBias(`${prefix}.gate_up_proj_bias`, guBias, I));
      tensors.set(`${prefix}.down_proj_bias`, stackBias(`${prefix}.down_proj_bias`, dnBias, H));
    } else if (guBias.length !== 0) {
      throw new FormatError({ format: NAME, reason: `${prefix}: some experts have biases and some do not` });
    }
  }
  const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  return {
    tensors,
    config: { ...input.modelConfig, quantization_config: { quant_method: "mxfp4", modules_to_not_convert: ignore } },
    extraFiles: new Map(),
    ignore,
    notes: [],
  };
};

export const readGptOssMxfp4 = (ctx: ReadContext): QuantizedReader => {
  const src = ctx.source;
  const prefixes = src
    .names()
    .filter((n) => n.endsWith(".gate_up_proj_blocks"))
    .map((n) => n.slice(0, -".gate_up_proj_blocks".length))
    .sort();
  const modules: string[] = [];
  const where = new Map<string, { prefix: string; e: number; proj: "gate" | "up" | "down" }>();
  const shapes = new Map<string, { E: number; I: number; H: number }>();
  for (const prefix of prefixes) {
    const gu = src.tensor(`${prefix}.gate_up_proj_blocks`);
    if (gu.shape.length !== 4 || gu.shape[3] !== 16) {
      throw new FormatError({
        format: NAME,
        reason: `${prefix}.gate_up_proj_blocks has shape [${gu.shape}], expected [E, 2I, H/32, 16]`,
      });
    }
    const [E, twoI, hb] = gu.shape as [number, number, number, number];
    shapes.set(prefix, { E, I: twoI / 2, H: hb * 32 });
    for (let e = 0; e < E; e++) {
      for (const proj of ["gate", "up", "down"] as const) {
        const name = `${prefix}.${e}.${proj}_proj`;
        modules.push(name);
        where.set(name, { prefix, e, proj });
      }
    }
  }
  const owns = (t: string) => {
    const dot = t.lastIndexOf(".");
    return (
      prefixes.includes(t.slice(0, dot)) &&
      ["gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"].includes(t.slice(dot + 1))
    );
  };
  const dequantize = (name: string): DequantizedModule => {
    const w = where.get(name);
    if (!w) throw new FormatError({ format: NAME, reason: `module "${name}" is not quantized in this checkpoint` });
    const { E, I, H } = shapes.get(w.prefix)!;
    const down = w.proj === "down";
    const rows = down ? H : I;
    const cols = down ? I : H;
    const base = down ? "down_proj" : "gate_up_proj";
    const fusedRows = down ? H : 2 * I;
    const blocks = expectTensor(
      NAME,
      `${w.prefix}.${base}_blocks`,
      maybeTensor(src, `${w.prefix}.${base}_blocks`),
      ["U8"],
      [E, fusedRows, cols / 32, 16],
    );
    const scales = expectTensor(
      NAME,
      `${w.prefix}.${base}_scales`,
      maybeTensor(src, `${w.prefix}.${base}_scales`),
      ["U8", "F8_E8M0"],
      [E, fusedRows, cols / 32],
    );
    const rowB = cols / 2;
    const rowS = cols / 32;
    const codes = new Uint8Array(rows * cols);
    const sc = new Uint8Array(rows * rowS);
    for (let j = 0; j < rows; j++) {
      const fr = down ? j : 2 * j + (w.proj === "up" ? 1 : 0);
      const b0 = (w.e * fusedRows + fr) * rowB;
      codes.set(unpackNibbles(blocks.data.subarray(b0, b0 + rowB), cols), j * cols);
      const s0 = (w.e * fusedRows + fr) * rowS;
      sc.set(scales.data.subarray(s0, s0 + rowS), j * rowS);
    }
    return { name, rows, cols, weight: dequantizeMxfp4(codes, sc, rows, cols) };
  };
  return { modules, dequantize, owns };
};

export const gptOssMxfp4: Format = {
  name: NAME,
  describe: {
    summary:
      "GPT-OSS MXFP4: experts fused per layer into *_blocks / *_scales (gate/up interleaved), E8M0 scales per 32 inputs",
    accepts: ["mxfp4"],
    files: [],
    loaders: "transformers (GptOss, Mxfp4Config), vLLM and SGLang gpt_oss [UNVERIFIED here]",
  },
  write,
};
