// What a checkpoint must contain for a spec (name, dtype, shape, role), checkpoint validation,
// and the quantization predicate with the role of each quantizable weight.
import type { Architecture } from "./arch.ts";
import { perExpertName } from "./blocks/experts.ts";
import { stackedExpertRoles, withRowSlices } from "./blocks/fused-tensors.ts";
import { ModelWeightError } from "./errors.ts";
import type { DenseMlpSpec, ExpectedTensor, LinearSpec, MixerSpec, ModelSpec, NormSpec, WeightRole } from "./spec.ts";
import type { WeightSource } from "./weights.ts";

type Role = ExpectedTensor["role"];

function linearTensors(l: LinearSpec, role: Role, out: ExpectedTensor[]) {
  // a row range of a shared tensor (DBRX Wqkv): the whole tensor, once
  if (l.rowSlice && out.some((t) => t.name === l.weight)) return;
  const rows = l.rowSlice?.totalRows ?? l.outFeatures;
  out.push({ name: l.weight, dtype: "BF16", shape: [rows, l.inFeatures], role });
  if (l.bias) out.push({ name: l.bias, dtype: "BF16", shape: [rows], role: "bias" });
}

function normTensors(n: NormSpec, out: ExpectedTensor[]) {
  if (n.weight) out.push({ name: n.weight, dtype: "BF16", shape: [n.dim], role: "norm" });
  if (n.kind === "layer" && n.bias) out.push({ name: n.bias, dtype: "BF16", shape: [n.dim], role: "norm" });
}

/** The linear projections of a token mixer, with their projection names (for tensors and roles). */
export function mixerLinears(
  a: MixerSpec,
): { l: LinearSpec; p: WeightRole["projection"]; module: "attention" | "indexer" }[] {
  const at = (l: LinearSpec | undefined, p: WeightRole["projection"], module: "attention" | "indexer" = "attention") =>
    l ? [{ l, p, module }] : [];
  if (a.kind === "standard")
    return [...at(a.q, "q_proj"), ...at(a.k, "k_proj"), ...at(a.v, "v_proj"), ...at(a.o, "o_proj")];
  if (a.kind === "mla")
    return [
      ...at(a.q, "q_proj"),
      ...at(a.qA, "q_a_proj"),
      ...at(a.qB, "q_b_proj"),
      ...at(a.kvA, "kv_a_proj_with_mqa"),
      ...at(a.kvB, "kv_b_proj"),
      ...at(a.o, "o_proj"),
      ...at(a.indexer?.wqB, "wq_b", "indexer"),
      ...at(a.indexer?.wk, "wk", "indexer"),
      ...at(a.indexer?.weightsProj, "weights_proj", "indexer"),
    ];
  const p = a.projections;
  return [
    ...(p.layout === "grouped"
      ? [...at(p.qkvz, "in_proj_qkvz"), ...at(p.ba, "in_proj_ba")]
      : [...at(p.qkv, "in_proj_qkv"), ...at(p.z, "in_proj_z"), ...at(p.b, "in_proj_b"), ...at(p.a, "in_proj_a")]),
    ...at(a.out, "out_proj"),
  ];
}

function attentionTensors(a: MixerSpec, out: ExpectedTensor[]) {
  for (const { l } of mixerLinears(a)) linearTensors(l, "attention", out);
  if (a.kind === "mla") {
    if (a.qANorm) normTensors(a.qANorm, out);
    normTensors(a.kvANorm, out);
    if (a.indexer) normTensors(a.indexer.kNorm, out);
    return;
  }
  if (a.kind === "gated_deltanet") {
    const convDim = 2 * a.numKHeads * a.kHeadDim + a.numVHeads * a.vHeadDim;
    out.push({ name: a.conv, dtype: "BF16", shape: [convDim, 1, a.convKernel], role: "linear_attention" });
    out.push({ name: a.aLog, dtype: "BF16", shape: [a.numVHeads], role: "linear_attention" });
    out.push({ name: a.dtBias, dtype: "BF16", shape: [a.numVHeads], role: "linear_attention" });
    normTensors(a.norm, out);
    return;
  }
  if (a.qkNorm) {
    normTensors(a.qkNorm.q, out);
    normTensors(a.qkNorm.k, out);
  }
  if (a.sinks) out.push({ name: a.sinks, dtype: "BF16", shape: [a.numHeads], role: "sinks" });
}

function mlpTensors(m: DenseMlpSpec, role: Role, out: ExpectedTensor[]) {
  for (const l of [m.gate, m.up, m.down]) linearTensors(l, role, out);
}

/** Every tensor the forward pass reads, in layer order (tied lm_head is not repeated). */
export function expectedTensors(spec: ModelSpec): ExpectedTensor[] {
  const out: ExpectedTensor[] = [
    { name: spec.embed.weight, dtype: "BF16", shape: [spec.vocabSize, spec.hiddenSize], role: "embedding" },
  ];
  for (const L of spec.layers) {
    normTensors(L.inputNorm, out);
    attentionTensors(L.attention, out);
    normTensors(L.postAttentionNorm, out);
    const m = L.mlp;
    if (m.kind === "dense") {
      mlpTensors(m, "mlp", out);
      continue;
    }
    linearTensors(m.router, "router", out);
    const r = m.routing;
    if ("bias" in r && r.bias)
      out.push({ name: r.bias, dtype: "BF16", shape: r.biasShape ?? [m.experts.numExperts], role: "router_bias" });
    const { numExperts: E, hidden: H, intermediate: I, layout } = m.experts;
    if (layout.kind === "stacked") {
      for (const name of [layout.gate, layout.up, layout.down])
        out.push({ name, dtype: "BF16", shape: [E * I, H], role: "experts" });
    } else if (layout.kind === "per_expert") {
      for (let e = 0; e < E; e++) {
        out.push({ name: perExpertName(layout, e, "gate"), dtype: "BF16", shape: [I, H], role: "experts" });
        out.push({ name: perExpertName(layout, e, "up"), dtype: "BF16", shape: [I, H], role: "experts" });
        out.push({ name: perExpertName(layout, e, "down"), dtype: "BF16", shape: [H, I], role: "experts" });
      }
    } else {
      out.push({
        name: layout.gateUp,
        dtype: "BF16",
        shape: layout.transposed ? [E, H, 2 * I] : [E, 2 * I, H],
        role: "experts",
      });
      out.push({ name: layout.down, dtype: "BF16", shape: layout.transposed ? [E, I, H] : [E, H, I], role: "experts" });
      if (layout.gateUpBias) out.push({ name: layout.gateUpBias, dtype: "BF16", shape: [E, 2 * I], role: "bias" });
      if (layout.downBias) out.push({ name: layout.downBias, dtype: "BF16", shape: [E, H], role: "bias" });
    }
    if (m.shared) {
      mlpTensors(m.shared.mlp, "shared_expert", out);
      if (m.shared.gate) linearTensors(m.shared.gate, "shared_expert_gate", out);
    }
  }
  normTensors(spec.finalNorm, out);
  if (!spec.tiedEmbeddings) linearTensors(spec.lmHead, "lm_head", out);
  return out;
}

const FLOAT_DTYPES = new Set(["F32", "F16", "BF16", "F64"]);

/** Throws ModelWeightError naming the first missing or mismatched tensor. */
export function validateWeights(spec: ModelSpec, source: WeightSource, label = "checkpoint"): void {
  for (const t of expectedTensors(spec)) {
    if (!source.has(t.name))
      throw new ModelWeightError({
        tensor: t.name,
        message: `${label}: tensor '${t.name}' (${t.role}, shape [${t.shape}]) is missing`,
      });
    const got = source.tensor(t.name);
    if (got.shape.length !== t.shape.length || got.shape.some((d, i) => d !== t.shape[i]))
      throw new ModelWeightError({
        tensor: t.name,
        message: `${label}: tensor '${t.name}' has shape [${got.shape}], the config implies [${t.shape}]`,
      });
    if (!FLOAT_DTYPES.has(got.dtype))
      throw new ModelWeightError({
        tensor: t.name,
        message: `${label}: tensor '${t.name}' has dtype ${got.dtype}, expected a float dtype`,
      });
  }
}

/**
 * Tensors of the checkpoint that the configured forward pass never reads (e.g. DeepSeek-V3's
 * multi-token-prediction layer, or a config that describes fewer layers than the checkpoint has):
 * listed to the user, since they are copied to the output unquantized.
 */
export function unusedTensors(spec: ModelSpec, source: WeightSource): string[] {
  const expected = new Set(expectedTensors(spec).map((t) => t.name));
  return source.names().filter((n) => !expected.has(n));
}

/** Every linear projection weight with its role (quantizable or not). */
export function weightRoles(spec: ModelSpec): WeightRole[] {
  const out: WeightRole[] = [];
  const proj = (l: LinearSpec): readonly [number, number] => [l.outFeatures, l.inFeatures];
  for (const L of spec.layers) {
    for (const { l, p, module } of mixerLinears(L.attention))
      out.push({ tensor: l.weight, layer: L.index, expert: null, module, projection: p, shape: proj(l) });
    const mlp = (m: DenseMlpSpec, module: "mlp" | "shared_expert") => {
      for (const [l, p] of [
        [m.gate, "gate_proj"],
        [m.up, "up_proj"],
        [m.down, "down_proj"],
      ] as const)
        out.push({ tensor: l.weight, layer: L.index, expert: null, module, projection: p, shape: proj(l) });
    };
    const m = L.mlp;
    if (m.kind === "dense") {
      mlp(m, "mlp");
      continue;
    }
    const { numExperts: E, hidden: H, intermediate: I, layout } = m.experts;
    for (let e = 0; e < E; e++) {
      if (layout.kind === "stacked") out.push(...stackedExpertRoles(layout, L.index, e, I, H));
      else if (layout.kind === "per_expert") {
        out.push({
          tensor: perExpertName(layout, e, "gate"),
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "gate_proj",
          shape: [I, H],
        });
        out.push({
          tensor: perExpertName(layout, e, "up"),
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "up_proj",
          shape: [I, H],
        });
        out.push({
          tensor: perExpertName(layout, e, "down"),
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "down_proj",
          shape: [H, I],
        });
      } else {
        const t = layout.transposed;
        const halves = layout.split === "halves";
        out.push({
          tensor: layout.gateUp,
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "gate_proj",
          shape: [I, H],
          fused: { expertAxis: 0, rows: halves ? "first_half" : "even", transposed: t },
        });
        out.push({
          tensor: layout.gateUp,
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "up_proj",
          shape: [I, H],
          fused: { expertAxis: 0, rows: halves ? "second_half" : "odd", transposed: t },
        });
        out.push({
          tensor: layout.down,
          layer: L.index,
          expert: e,
          module: "experts",
          projection: "down_proj",
          shape: [H, I],
          fused: { expertAxis: 0, rows: "all", transposed: t },
        });
      }
    }
    if (m.shared) mlp(m.shared.mlp, "shared_expert");
  }
  return withRowSlices(spec, out);
}

/**
 * Default predicate: attention projections, dense MLPs, routed and shared experts are quantized;
 * routers, the shared-expert gate, the DSA indexer, norms, biases, sinks, embeddings and lm_head are not.
 */
export const defaultQuantizable = (role: WeightRole): boolean =>
  role.module === "attention" || role.module === "mlp" || role.module === "experts" || role.module === "shared_expert";

export function quantizableWeights(arch: Architecture, spec: ModelSpec): WeightRole[] {
  const pred = arch.quantizable ?? defaultQuantizable;
  return weightRoles(spec).filter(pred);
}

/** Whether a tensor name is quantized by default under this architecture. */
export function isQuantizable(arch: Architecture, spec: ModelSpec, tensor: string): boolean {
  return quantizableWeights(arch, spec).some((r) => r.tensor === tensor);
}
