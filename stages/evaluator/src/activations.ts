// Activations of the quantized checkpoint's forward, treated the way its serving engine treats
// them: every quantized Linear's input goes through the fake-quantization its checkpoint states
// (static FP8 input_scale, dynamic FP8 per token / per token group, NVFP4 W4A4 from
// input_global_scale), through the engine's linear hook. Scales come from the checkpoint itself,
// read back through @moeq/formats. "weights-only" keeps activations f32 (the checkpoint scored as
// if it were W8A16 / W4A16).
//
// Experts: gate and up multiply the same input, and vLLM fuses them into one w13 GEMM with one
// input scale (FP8: the larger scale; NVFP4: the smaller global scale, i.e. the wider range), so
// both use the combination. "layer-max" goes further, like vLLM's fused FP8 MoE (and FlashInfer's
// TRT-LLM NVFP4 MoE): one scale per layer for all experts' w13 and one for their w2.
import type { InputQuantization, QuantizedCheckpoint } from "@moeq/formats";
import { type LinearCall, type LinearHook, type ModelSpec, packTarget, weightRoles } from "@moeq/models";
import { fakeQuantFp8PerToken, fakeQuantFp8PerTokenGroup, fakeQuantFp8Static, fakeQuantNvfp4 } from "@moeq/quant";
import { Data } from "effect";

export type ActivationMode = "quantized" | "weights-only";
export type ExpertInputScales = "per-expert" | "layer-max";

export const activationModes: readonly ActivationMode[] = ["quantized", "weights-only"];
export const expertInputScaleModes: readonly ExpertInputScales[] = ["per-expert", "layer-max"];

/** What the evaluation did with activations; report.json, the report and `moeq eval --json` show it. */
export interface ActivationTreatment {
  readonly mode: ActivationMode;
  readonly expertInputScales: ExpertInputScales;
  /** quantized modules per input quantization the checkpoint states ("none": weight-only modules) */
  readonly modules: Readonly<Record<string, number>>;
  /** one line: what was applied */
  readonly summary: string;
  /** modules whose stated activation scheme is not emulated (their inputs stay f32) */
  readonly unsupported: readonly string[];
}

/** Expert scales that cannot be combined (gate/up or a layer's experts disagree on the scheme). */
export class ActivationPlanError extends Data.TaggedError("ActivationPlanError")<{ readonly message: string }> {}

const KIND_TEXT: Record<InputQuantization["kind"], string> = {
  "fp8-tensor": "FP8 e4m3 static per tensor (input_scale)",
  "fp8-token": "FP8 e4m3 dynamic per token",
  "fp8-token-group": "FP8 e4m3 dynamic per token and column group",
  nvfp4: "NVFP4 (FP4 e2m1, 16-element blocks, e4m3 block scales from input_global_scale)",
  unsupported: "not emulated",
};

const label = (q: InputQuantization | null): string =>
  q === null ? "none" : q.kind === "fp8-token-group" ? `fp8-token-group-${q.groupSize}` : q.kind;

/** One input quantization for several modules that share an input (one fused GEMM as served). */
export function combineInputQuantization(
  what: string,
  qs: readonly (InputQuantization | null)[],
): InputQuantization | null {
  const present = qs.filter((q): q is InputQuantization => q !== null);
  if (present.length === 0) return null;
  if (present.length !== qs.length)
    throw new ActivationPlanError({ message: `${what}: some modules sharing an input quantize it and some do not` });
  const u = present.find((q) => q.kind === "unsupported");
  if (u) return u;
  const kinds = new Set(present.map(label));
  if (kinds.size > 1)
    throw new ActivationPlanError({ message: `${what}: modules sharing an input disagree (${[...kinds].join(", ")})` });
  const first = present[0]!;
  if (first.kind === "fp8-tensor")
    return { kind: "fp8-tensor", scale: Math.max(...present.map((q) => (q as typeof first).scale)) };
  if (first.kind === "nvfp4")
    return { kind: "nvfp4", globalScale: Math.min(...present.map((q) => (q as typeof first).globalScale)) };
  return first;
}

/** x fake-quantized as `q` says; `name` goes into error messages. */
export function applyInputQuantization(
  q: InputQuantization,
  x: Float32Array,
  rows: number,
  cols: number,
  name: string,
): Float32Array {
  switch (q.kind) {
    case "fp8-tensor":
      return fakeQuantFp8Static(x, rows, cols, q.scale, name);
    case "fp8-token":
      return fakeQuantFp8PerToken(x, rows, cols, name);
    case "fp8-token-group":
      return fakeQuantFp8PerTokenGroup(x, rows, cols, q.groupSize, name);
    case "nvfp4":
      return fakeQuantNvfp4(x, rows, cols, q.globalScale, name);
    case "unsupported":
      return x;
  }
}

export interface ActivationPlan {
  readonly treatment: ActivationTreatment;
  /** undefined when nothing is to be quantized (weights-only, or a weight-only checkpoint) */
  readonly hook: LinearHook | undefined;
  /** the input quantization a Linear call gets (null: left f32) */
  resolve(call: LinearCall): InputQuantization | null;
}

export interface ActivationPlanOptions {
  readonly mode?: ActivationMode;
  readonly expertInputScales?: ExpertInputScales;
}

export function planActivations(
  qc: QuantizedCheckpoint,
  qspec: ModelSpec,
  o: ActivationPlanOptions = {},
): ActivationPlan {
  const mode = o.mode ?? "quantized";
  const expertInputScales = o.expertInputScales ?? "per-expert";
  const quantized = new Set(qc.quantizedModules);
  const stated = new Map<string, InputQuantization | null>();
  for (const m of qc.quantizedModules) stated.set(m, qc.inputQuantization(m));

  // Routed experts: the modules behind each (layer, expert, w13|w2) GEMM, from the spec's roles
  // (per-expert tensors, or fused tensors the packer stored per expert).
  const expertGroups = new Map<string, Set<string>>();
  for (const r of weightRoles(qspec)) {
    if (r.module !== "experts" || r.expert === null) continue;
    const mod = packTarget(qspec, r).module;
    if (!quantized.has(mod)) continue;
    const key = `${r.layer}/${r.expert}/${r.projection === "down_proj" ? "w2" : "w13"}`;
    if (!expertGroups.has(key)) expertGroups.set(key, new Set());
    expertGroups.get(key)!.add(mod);
  }
  const expertQ = new Map<string, InputQuantization | null>();
  for (const [key, mods] of expertGroups)
    expertQ.set(
      key,
      combineInputQuantization(
        `experts ${key}`,
        [...mods].map((m) => stated.get(m) ?? null),
      ),
    );
  if (expertInputScales === "layer-max") {
    const byLayer = new Map<string, string[]>();
    for (const key of expertQ.keys()) {
      const [layer, , w] = key.split("/");
      const lk = `${layer}/${w}`;
      byLayer.set(lk, [...(byLayer.get(lk) ?? []), key]);
    }
    for (const [lk, keys] of byLayer) {
      const q = combineInputQuantization(
        `layer ${lk} experts`,
        keys.map((k) => expertQ.get(k) ?? null),
      );
      for (const k of keys) expertQ.set(k, q);
    }
  }

  const resolve = (call: LinearCall): InputQuantization | null => {
    if (call.module === "experts" && call.expert !== null) {
      const q = expertQ.get(`${call.layer}/${call.expert}/${call.projection === "down_proj" ? "w2" : "w13"}`);
      if (q !== undefined) return q;
    }
    const mod = call.weight.endsWith(".weight") ? call.weight.slice(0, -".weight".length) : call.weight;
    return stated.get(mod) ?? null;
  };

  const counts: Record<string, number> = {};
  for (const q of stated.values()) counts[label(q)] = (counts[label(q)] ?? 0) + 1;
  const unsupported = [...stated].flatMap(([, q]) => (q?.kind === "unsupported" ? [q.reason] : []));
  const applied = [...stated.values()].filter((q) => q !== null && q.kind !== "unsupported") as InputQuantization[];
  const kinds = [...new Set(applied.map((q) => KIND_TEXT[q.kind]))];
  const n = applied.length;
  const summary =
    n === 0
      ? `weights only: the checkpoint states no activation quantization${unsupported.length ? ` it can be scored with (${unsupported.length} modules not emulated)` : ""}`
      : mode === "weights-only"
        ? `weights only (requested): activations of ${n} modules kept f32, though the checkpoint states ${kinds.join(" + ")}`
        : `${kinds.join(" + ")} on the inputs of ${n} quantized modules${expertGroups.size && applied.some((q) => q.kind === "fp8-tensor" || q.kind === "nvfp4") ? `, expert scales ${expertInputScales}` : ""}${unsupported.length ? `; ${unsupported.length} modules not emulated` : ""}`;

  const cache = new Map<string, InputQuantization | null>();
  const hook: LinearHook | undefined =
    mode === "quantized" && n > 0
      ? (call, x, rows, inFeatures) => {
          const key = `${call.weight}|${call.expert}|${call.projection}`;
          let q = cache.get(key);
          if (q === undefined) {
            q = resolve(call);
            cache.set(key, q);
          }
          if (q === null || q.kind === "unsupported" || rows === 0) return x;
          return applyInputQuantization(
            q,
            x,
            rows,
            inFeatures,
            `input of ${call.weight}${call.expert === null ? "" : ` (expert ${call.expert}, ${call.projection})`}`,
          );
        }
      : undefined;
  return { treatment: { mode, expertInputScales, modules: counts, summary, unsupported }, hook, resolve };
}
