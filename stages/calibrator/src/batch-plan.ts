// Host-side bookkeeping of the batched (--device cuda) MoE statistics: which experts of a layer the
// batch covers, each expert's calibration rows and weights under the routing plan (one CSR for the
// whole layer, uploaded once), and the quantize-batch work items of the hand-off. No device access
// here: this is what the unit tests pin down, the device work is in device-moe.ts.
import { type BatchExpert, type QuantizeBatchWork, type TensorDescriptor, workId } from "@moeq/contracts";
import type { MoeSpec } from "@moeq/models";
import type { QuantTarget } from "@moeq/runtime";

/** The two projection kinds of a routed expert: gate/up share the expert input (one Hessian), down has its own. */
export type ExpertGroup = "experts.gate_up" | "experts.down";
export const INPUT_PROJECTIONS = ["gate_proj", "up_proj"] as const;

/** Experts of one layer whose statistics and GPTQ run batched, with their targets by projection. */
export interface LayerBatch {
  /** targeted experts, ascending: stack slot i holds experts[i] */
  readonly experts: readonly number[];
  readonly gate: readonly QuantTarget[];
  readonly up: readonly QuantTarget[];
  readonly down: readonly QuantTarget[];
  readonly hidden: number;
  readonly inter: number;
}

/**
 * The batched device path covers experts computing act(x·gateᵀ)·(x·upᵀ)·downᵀ with SiLU and no
 * biases (Qwen-MoE, Mixtral, DeepSeek, OLMoE, Llama 4, ...), every targeted expert with all three
 * projections. Anything else returns the reason the per-expert path keeps the layer.
 */
export function layerBatch(m: MoeSpec, targets: readonly QuantTarget[]): LayerBatch | string {
  const ex = m.experts;
  if (ex.act !== "silu") return `expert activation ${ex.act} (the batched statistics compute SiLU-gated experts)`;
  if (ex.clampedGlu) return "clamped SwiGLU experts";
  if (ex.layout.kind === "fused" && (ex.layout.gateUpBias || ex.layout.downBias)) return "expert biases";
  const mine = targets.filter((t) => t.module === "experts");
  const experts = [...new Set(mine.map((t) => t.expert))].sort((a, b) => a - b);
  if (experts.length === 0) return "no routed-expert targets";
  const by = (proj: string) => experts.map((e) => mine.find((t) => t.expert === e && t.proj === proj));
  const [gate, up, down] = [by("gate_proj"), by("up_proj"), by("down_proj")];
  const missing = experts.findIndex((_, i) => !gate[i] || !up[i] || !down[i]);
  if (missing >= 0) return `expert ${experts[missing]} is not targeted in all of gate_proj, up_proj, down_proj`;
  const extra = mine.find((t) => !["gate_proj", "up_proj", "down_proj"].includes(t.proj));
  if (extra) return `expert projection ${extra.proj}`;
  const g = gate as QuantTarget[];
  const u = up as QuantTarget[];
  const d = down as QuantTarget[];
  const H = ex.hidden;
  const I = ex.intermediate;
  const bad = [...g, ...u].find((t) => t.rows !== I || t.cols !== H) ?? d.find((t) => t.rows !== H || t.cols !== I);
  if (bad) return `${bad.tensor}: [${bad.rows}, ${bad.cols}] is not the expert shape`;
  return { experts, gate: g, up: u, down: d, hidden: H, inter: I };
}

/**
 * GPU bytes one expert slot costs at the peak of a batch: the quantizer's gate_up GPTQ (about
 * 24·rows·cols + 16·cols² inside cudaGptqBatched, rows = 2I, cols = H, plus the scaled Hessian
 * copy, the dequantized weights and the loss product) and the calibrator's stacks it maps.
 */
export function slotBytes(hidden: number, inter: number): number {
  const H = hidden;
  const I = inter;
  return 4 * (2 * I * H + H * I + H * H + I * I) + 24 * 2 * I * H + 16 * H * H + 4 * H * H + 2 * 4 * 2 * I * H;
}

/**
 * The layer's experts in consecutive chunks whose stacks fit `budgetBytes` (at least one expert
 * each): Qwen3-30B-A3B's 128 experts (26.5 GiB by slotBytes) are one chunk under the default
 * 32 GiB; DeepSeek-V3's 256 experts of 7168×2048 (2.2 GiB each) are chunks of 14, so no process
 * holds a layer's 50 GB of Hessians.
 */
export function expertChunks(batch: LayerBatch, budgetBytes: number): LayerBatch[] {
  const per = Math.max(1, Math.floor(budgetBytes / slotBytes(batch.hidden, batch.inter)));
  const out: LayerBatch[] = [];
  for (let i = 0; i < batch.experts.length; i += per) {
    const j = Math.min(batch.experts.length, i + per);
    out.push({
      ...batch,
      experts: batch.experts.slice(i, j),
      gate: batch.gate.slice(i, j),
      up: batch.up.slice(i, j),
      down: batch.down.slice(i, j),
    });
  }
  return out;
}

/** Every expert's calibration rows of the layer as one CSR: rows of expert slot i are index[offsets[i]..offsets[i+1]). */
export interface RowPlan {
  readonly offsets: Int32Array;
  readonly index: Int32Array;
  /** the policy's raw calibration weights of those rows */
  readonly weights: Float32Array;
  /** Σ weights per expert slot (the CPU path's f64 sum of the same f32 values) */
  readonly mass: Float64Array;
  /** the largest expert's row count (scratch size) */
  readonly maxRows: number;
}

/** From the plan's [rows, E] calibration weights: the rows with weight > 0 of each batched expert, in row order. */
export function rowPlan(calib: Float32Array, rows: number, numExperts: number, experts: readonly number[]): RowPlan {
  const offsets = new Int32Array(experts.length + 1);
  for (let i = 0; i < experts.length; i++) {
    let n = 0;
    for (let t = 0; t < rows; t++) if (calib[t * numExperts + experts[i]] > 0) n++;
    offsets[i + 1] = offsets[i] + n;
  }
  const index = new Int32Array(offsets[experts.length]);
  const weights = new Float32Array(index.length);
  const mass = new Float64Array(experts.length);
  let maxRows = 0;
  for (let i = 0; i < experts.length; i++) {
    let k = offsets[i];
    let m = 0;
    for (let t = 0; t < rows; t++) {
      const w = calib[t * numExperts + experts[i]];
      if (w > 0) {
        index[k] = t;
        weights[k++] = w;
        m += w;
      }
    }
    mass[i] = m;
    maxRows = Math.max(maxRows, offsets[i + 1] - offsets[i]);
  }
  return { offsets, index, weights, mass, maxRows };
}

/** The plan of expert slots [from, to) of a RowPlan, offsets rebased (views, no copies). */
export function slicePlan(p: RowPlan, from: number, to: number): RowPlan {
  const base = p.offsets[from];
  const offsets = Int32Array.from(p.offsets.subarray(from, to + 1), (v) => v - base);
  let maxRows = 0;
  for (let i = 0; i + 1 < offsets.length; i++) maxRows = Math.max(maxRows, offsets[i + 1] - offsets[i]);
  return {
    offsets,
    index: p.index.subarray(base, p.offsets[to]),
    weights: p.weights.subarray(base, p.offsets[to]),
    mass: p.mass.subarray(from, to),
    maxRows,
  };
}

/** What the statistics gave each expert slot (tokens and mass from the plan, absmax from the device). */
export interface SlotStats {
  readonly tokens: number;
  readonly weightMass: number;
}

export const NO_TOKENS = "no calibration tokens under the policy: RTN";

/** The quantize-batch payload of one projection kind of a layer. */
export function batchPayload(
  L: number,
  group: ExpertGroup,
  batch: LayerBatch,
  slots: readonly SlotStats[],
  weight: TensorDescriptor,
  hessian: TensorDescriptor,
  weightDtype: string,
  options: Record<string, unknown>,
): QuantizeBatchWork {
  const experts: BatchExpert[] = batch.experts.map((e, i) => {
    const projections =
      group === "experts.down"
        ? [{ proj: "down_proj", tensor: batch.down[i].tensor, rowStart: 0, rows: batch.hidden }]
        : [
            { proj: "gate_proj", tensor: batch.gate[i].tensor, rowStart: 0, rows: batch.inter },
            { proj: "up_proj", tensor: batch.up[i].tensor, rowStart: batch.inter, rows: batch.inter },
          ];
    const s = slots[i];
    return {
      expert: e,
      tokens: s.tokens,
      weightMass: s.weightMass,
      projections,
      ...(s.tokens === 0 ? { fallback: NO_TOKENS } : {}),
    };
  });
  return { layer: L, group, weight, hessian, experts, weightDtype, algorithm: "gptq", options };
}

/**
 * The work item id: the layer, the chunk's first expert and the kind, plus a generation tag from the hand-off (the IPC handle),
 * so a calibrator restarted after SIGKILL publishes its recomputed batch under a new message id
 * instead of having it dropped as a duplicate of the dead process's.
 */
export function batchWorkId(
  runId: string,
  L: number,
  group: ExpertGroup,
  firstExpert: number,
  generation: string,
): string {
  return `${workId({ runId, stage: "quantize", layer: L, expert: firstExpert, proj: group })}@${generation}`;
}
