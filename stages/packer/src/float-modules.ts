// Float-scheme modules (FP8, NVFP4, MXFP4) from the quantizer's outputs, plus the static input
// scales of W8A8-FP8 / NVFP4 from the calibrator's input absmax. An expert that saw no
// calibration token takes the largest absmax of its layer's calibrated experts for that
// projection, and the writer's notes (→ pack.json, summary, report) say so.
import type { EventOf } from "@moeq/contracts";
import type { QuantizedModule } from "@moeq/formats";
import { type ActivationRange, inputScaleFp8, nvfp4InputScale, resolveExpertInputRanges } from "@moeq/quant";
import {
  floatSchemeCanPack,
  type QuantTarget,
  SCHEME_INFO,
  type SchemeName,
  type StageContext,
  StageError,
  targetKey,
} from "@moeq/runtime";

const fail = (message: string): never => {
  throw new StageError({ stage: "packer", message, permanent: true });
};

function weightOf(
  ctx: StageContext,
  scheme: SchemeName,
  convention: "compressed-tensors" | "modelopt",
  ev: EventOf<"ExpertQuantized">,
  t: QuantTarget,
) {
  const o = ev.payload.outputs;
  const src = `ExpertQuantized ${targetKey(t)}`;
  for (const k of ["codes", "scales", "dequant"])
    if (!o[k]) fail(`${src}: output '${k}' is missing (quantized with scheme ${ev.payload.algorithm}, not ${scheme})`);
  const { rows, cols } = t;
  const codes = ctx.reader.bytes(o.codes, `${src} codes`);
  const dequant = ctx.reader.f32(o.dequant, `${src} dequant`);
  if (codes.length !== rows * cols || dequant.length !== rows * cols)
    fail(`${src}: outputs do not fit [${rows}, ${cols}]`);
  const info = SCHEME_INFO[scheme];
  if (info.family === "fp8") {
    const scales = ctx.reader.f32(o.scales, `${src} scales`);
    const scaleShape = o.scales.shape as [number, number];
    const block = info.fp8Strategy === "block" ? ([128, 128] as const) : null;
    return { kind: "fp8", strategy: info.fp8Strategy!, block, rows, cols, codes, scales, scaleShape, dequant } as const;
  }
  const scales = ctx.reader.bytes(o.scales, `${src} scales`);
  if (info.family === "mxfp4") return { kind: "mxfp4", rows, cols, codes, scales, dequant } as const;
  if (!o.global_scale) fail(`${src}: output 'global_scale' is missing`);
  const globalScale = ctx.reader.f32(o.global_scale, `${src} global_scale`)[0];
  return { kind: "nvfp4", convention, rows, cols, codes, blockScales: scales, globalScale, dequant } as const;
}

export function floatModules(
  ctx: StageContext,
  targets: readonly QuantTarget[],
  byKey: ReadonlyMap<string, EventOf<"ExpertQuantized">>,
): QuantizedModule[] {
  const scheme = ctx.options.scheme;
  const info = SCHEME_INFO[scheme];
  const convention = ctx.options.format === "modelopt" ? "modelopt" : "compressed-tensors";
  // Experts extracted from fused tensors are whole modules under their per-expert names; only a row
  // slice of a module (DBRX's q/k/v inside Wqkv) would need scales shared across the slices.
  for (const t of targets)
    if (!floatSchemeCanPack(t))
      fail(
        `${t.tensor}: scheme ${scheme} cannot quantize a row slice of a fused module (${t.packed.module}); use an int scheme or --targets experts`,
      );
  const modules = targets.map((t) => ({
    t,
    name: t.packed.module,
    weight: weightOf(ctx, scheme, convention, byKey.get(targetKey(t))!, t),
  }));
  if (!info.staticInputs) return modules.map(({ name, weight }) => ({ name, weight }));
  const calibrated = new Map(ctx.all("ExpertCalibrated").map((e) => [targetKey(e.payload), e.payload]));
  // experts of one layer and projection share a fallback: their calibrated siblings' max
  const groups = new Map<string, Map<string, ActivationRange | undefined>>();
  for (const { t, name } of modules) {
    const g = `${t.layer}/${t.proj}`;
    if (!groups.has(g)) groups.set(g, new Map());
    const c = calibrated.get(targetKey(t));
    groups.get(g)!.set(name, c ? { tokens: c.tokens, absmax: c.inputAbsmax } : undefined);
  }
  const ranges = new Map<
    string,
    ReturnType<typeof resolveExpertInputRanges> extends Map<string, infer R> ? R : never
  >();
  for (const g of groups.values()) {
    try {
      for (const [n, r] of resolveExpertInputRanges(g, "layer-max")) ranges.set(n, r);
    } catch (e) {
      fail(`static input scales: ${(e as Error).message}`);
    }
  }
  return modules.map(({ name, weight }) => {
    const r = ranges.get(name)!;
    const inputScale = info.family === "fp8" ? inputScaleFp8(r) : nvfp4InputScale(r, convention);
    return { name, weight, inputScale, inputRange: { source: r.source, ...(r.reason ? { reason: r.reason } : {}) } };
  });
}
