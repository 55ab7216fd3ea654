// Float schemes (FP8, NVFP4, MXFP4) for one projection. Outputs: the codes, the scales (f32 for
// FP8, e4m3/e8m0 bytes for the FP4 schemes), NVFP4's tensor scale, and the quantizer's own
// dequantization, which the packer hands to the format writer so its exactness check compares
// the stored bytes against what we evaluated.

import type { TensorDescriptor } from "@moeq/contracts";
import { buildSpec, extractRoleMatrix, type RawConfig, tensorToF32 } from "@moeq/models";
import { nvfp4GlobalScale, quantizeFp8, quantizeMxfp4, quantizeNvfp4 } from "@moeq/quant";
import {
  type QuantTarget,
  quantTargets,
  SCHEME_INFO,
  type SchemeName,
  type StageContext,
  targetKey,
} from "@moeq/runtime";

export interface FloatResult {
  readonly codes: Uint8Array;
  readonly scales: Float32Array | Uint8Array;
  readonly scaleShape: number[];
  readonly globalScale?: number;
  readonly dequant: Float32Array;
}

/**
 * vLLM fuses q/k/v of attention and each gate/up pair (of an expert, the shared expert or a dense
 * MLP) into one weight that keeps one NVFP4 tensor scale, so every member of such a group must be
 * quantized with the group's amax. Which targets form a group comes from their roles, so fused
 * on-disk layouts (Llama 4's [gate|up], GPT-OSS's interleave) group exactly like per-expert ones.
 */
const fusionGroup = (t: QuantTarget): string | undefined => {
  const p = t.role.projection;
  if (t.role.module === "attention" && (p === "q_proj" || p === "k_proj" || p === "v_proj")) return `${t.layer}/qkv`;
  if (p === "gate_proj" || p === "up_proj") return `${t.layer}/${t.role.module}/${t.role.expert ?? "-"}/gate_up`;
  return undefined;
};

let targetsOfRun: Promise<readonly QuantTarget[]> | undefined;
const runTargets = (ctx: StageContext) =>
  (targetsOfRun ??= ctx.waitFor("ModelOpened").then((opened) => {
    const { arch, spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
    return quantTargets(arch, spec, ctx.options.targets);
  }));

/** amax of one target's [rows, cols] matrix as the loader published it (cut out of a fused tensor if need be). */
async function targetAmax(ctx: StageContext, t: QuantTarget): Promise<number> {
  const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === t.layer);
  const d = loaded.payload.tensors[t.tensor] as TensorDescriptor | undefined;
  if (!d)
    throw new Error(`tensor '${t.tensor}' (NVFP4 scale group of ${targetKey(t)}) was not published by the loader`);
  const host = await ctx.host();
  const whole = ctx.reader.tensor(await host.readable(d, `${t.tensor} weight`), t.tensor);
  // cut the matrix out of the stored elements before widening: a fused tensor is never decoded whole
  const width = whole.dtype === "F32" ? 4 : whole.dtype === "BF16" || whole.dtype === "F16" ? 2 : 0;
  let w: Float32Array;
  if (t.extracted && width > 0) {
    const bytes = whole.data.byteOffset % width === 0 ? whole.data : whole.data.slice();
    const elems =
      width === 4
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    const m = extractRoleMatrix(t.role, elems, whole.shape);
    w = tensorToF32(
      { dtype: whole.dtype, shape: [m.length], data: new Uint8Array(m.buffer, m.byteOffset, m.byteLength) },
      t.tensor,
    );
  } else {
    const f = tensorToF32(whole, t.tensor);
    w = t.extracted ? extractRoleMatrix(t.role, f, whole.shape) : f;
  }
  let amax = 0;
  for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(Math.fround(w[i])));
  return amax;
}

/** The largest amax over the other members of this item's fusion group (0 when it has none). */
async function siblingAmax(
  ctx: StageContext,
  at: { layer: number; expert?: number; proj?: string; tensor?: string },
): Promise<number> {
  const targets = await runTargets(ctx);
  const self = targets.find(
    (t) =>
      t.layer === at.layer &&
      t.tensor === at.tensor &&
      t.proj === at.proj &&
      (at.expert === undefined || t.expert === at.expert),
  );
  const group = self && fusionGroup(self);
  if (!self || !group) return 0;
  let amax = 0;
  for (const t of targets)
    if (t !== self && t.layer === self.layer && fusionGroup(t) === group)
      amax = Math.max(amax, await targetAmax(ctx, t));
  return amax;
}

export async function quantizeFloat(
  ctx: StageContext,
  scheme: SchemeName,
  w: Float32Array,
  rows: number,
  cols: number,
  at: { layer: number; expert?: number; proj?: string; tensor?: string; name: string },
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
  let amax = await siblingAmax(ctx, at);
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
