// Float schemes (FP8, NVFP4, MXFP4) for one projection. Outputs: the codes, the scales (f32 for
// FP8, e4m3/e8m0 bytes for the FP4 schemes), NVFP4's tensor scale, and the quantizer's own
// dequantization, which the packer hands to the format writer so its exactness check compares
// the stored bytes against what we evaluated.

import type { TensorDescriptor } from "@moeq/contracts";
import { tensorToF32 } from "@moeq/models";
import { nvfp4GlobalScale, quantizeFp8, quantizeMxfp4, quantizeNvfp4 } from "@moeq/quant";
import { SCHEME_INFO, type SchemeName, type StageContext } from "@moeq/runtime";

export interface FloatResult {
  readonly codes: Uint8Array;
  readonly scales: Float32Array | Uint8Array;
  readonly scaleShape: number[];
  readonly globalScale?: number;
  readonly dequant: Float32Array;
}

/** The projection vLLM fuses with this one (gate ↔ up), which must share NVFP4's tensor scale. */
const fusedSibling = (tensor: string): string | undefined =>
  tensor.includes("gate_proj")
    ? tensor.replace("gate_proj", "up_proj")
    : tensor.includes("up_proj")
      ? tensor.replace("up_proj", "gate_proj")
      : undefined;

async function siblingAmax(ctx: StageContext, layer: number, tensor: string | undefined): Promise<number> {
  const sib = tensor && fusedSibling(tensor);
  if (!sib) return 0;
  const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === layer);
  const d = loaded.payload.tensors[sib] as TensorDescriptor | undefined;
  if (!d) return 0;
  const host = await ctx.host();
  const w = tensorToF32(ctx.reader.tensor(await host.readable(d, `${sib} weight`), sib), sib);
  let m = 0;
  for (let i = 0; i < w.length; i++) m = Math.max(m, Math.abs(Math.fround(w[i])));
  return m;
}

export async function quantizeFloat(
  ctx: StageContext,
  scheme: SchemeName,
  w: Float32Array,
  rows: number,
  cols: number,
  at: { layer: number; tensor?: string; name: string },
): Promise<FloatResult> {
  const info = SCHEME_INFO[scheme];
  if (info.family === "fp8") {
    const q = quantizeFp8(w, rows, cols, { strategy: info.fp8Strategy!, name: at.name });
    return { codes: q.codes, scales: q.scales, scaleShape: [...q.scaleShape], dequant: q.dequant };
  }
  if (info.family === "mxfp4") {
    const q = quantizeMxfp4(w, rows, cols, { name: at.name });
    return { codes: q.codes, scales: q.scales, scaleShape: [rows, cols / 32], dequant: q.dequant };
  }
  const convention = ctx.options.format === "modelopt" ? "modelopt" : "compressed-tensors";
  let amax = await siblingAmax(ctx, at.layer, at.tensor);
  for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(Math.fround(w[i])));
  const q = quantizeNvfp4(w, rows, cols, {
    convention,
    globalScale: nvfp4GlobalScale(amax, convention),
    name: at.name,
  });
  return {
    codes: q.codes,
    scales: q.blockScales,
    scaleShape: [rows, cols / 16],
    globalScale: q.globalScale,
    dequant: q.dequant,
  };
}
