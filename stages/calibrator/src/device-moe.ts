// --device cuda: the statistics of all routed experts of a MoE layer in one pass on the GPU and
// their hand-off to the quantizer as two batched work items (gate_up, down) whose weights and
// Hessians stay in GPU memory (cuda descriptors: CUDA IPC handles leased to the consuming
// quantizer). Per expert slot i, with xs = its policy rows of the MoE input (Llama 4: scaled by
// the routing weight, the same f32 product the block forms) and w their calibration weights:
//   H_in[i]   = Σ w·xs·xsᵀ                       (gate and up: one Hessian, one factorisation)
//   H_down[i] = Σ w·a·aᵀ,  a = silu(xs·gateᵀ)·(xs·upᵀ)
// the raw weighted sums of the CPU path (the quantizer applies GPTQ's 2/Σw). Precision: f32
// products and f32 accumulation (cuBLAS SGEMM, no TF32): the CPU path sums in f64, and TF32 /
// bf16 operands would move the Hessian by ~3e-4 / 3e-3 relative (docs/gpu.md) and with it codes;
// f32 sums over the ≤ 10⁵ rows of one expert stay near 1e-6 relative, under what GPTQ's 1 %
// damping absorbs. Nothing is downloaded between calibrator and quantizer.

import { join } from "node:path";
import type { TensorDescriptor } from "@moeq/contracts";
import { tensorToF32 } from "@moeq/models";
import type { CudaBuffer, CudaKernels } from "@moeq/native";
import type { StageContext } from "@moeq/runtime";
import { type QuantTarget, StageError, targetWeight, telemetry as tracing } from "@moeq/runtime";
import { type CudaTensorStore, cudaLeaseKey } from "@moeq/store";
import { batchPayload, batchWorkId, type ExpertGroup, type LayerBatch, type RowPlan } from "./batch-plan.ts";
import { fusedCache } from "./work.ts";

/** The layer's MoE input on the device: [rows, hidden] f32 (uploaded from the CPU engine today, a device engine's output later). */
export interface DeviceInput {
  readonly x: CudaBuffer;
  readonly rows: number;
}

/** Per expert slot: the statistics' wall time and input ranges. */
export interface DeviceSlot {
  readonly ms: number;
  readonly absIn: number;
  readonly absDown: number;
}

export interface DeviceStatistics {
  /** f32 [E, H, H] and [E, I, I], raw weighted sums */
  readonly hIn: CudaBuffer;
  readonly hDown: CudaBuffer;
  readonly slots: readonly DeviceSlot[];
}

/** The stacked expert weights on the device: gate rows then up rows [E, 2I, H], down [E, H, I], f32. */
export interface DeviceWeights {
  readonly gateUp: CudaBuffer;
  readonly down: CudaBuffer;
  /** the checkpoint dtype they were decoded from (the quantizer's scale dtype follows it) */
  readonly dtype: string;
}

const f32Bytes = (n: number) => n * 4;

/** Uploads every batched expert's gate/up/down (decoded to f32 on the host, one matrix at a time). */
export function uploadExpertWeights(
  cu: CudaKernels,
  device: number,
  ctx: StageContext,
  batch: LayerBatch,
  descs: ReadonlyMap<string, TensorDescriptor>,
): DeviceWeights {
  const { hidden: H, inter: I } = batch;
  const E = batch.experts.length;
  const gateUp = cu.cudaAlloc(f32Bytes(E * 2 * I * H), device);
  const down = cu.cudaAlloc(f32Bytes(E * H * I), device);
  const dir = join(ctx.paths.tensors, "weights");
  let dtype = "f32";
  const put = (t: QuantTarget, dst: CudaBuffer, byteOffset: number) => {
    const d = targetWeight(ctx.reader, dir, t, descs.get(t.tensor), fusedCache);
    if (!d)
      throw new StageError({
        stage: ctx.stage,
        message: `tensor ${t.tensor} was not in LayerLoaded(${t.layer})`,
        permanent: true,
      });
    dtype = d.dtype;
    const w = tensorToF32(ctx.reader.tensor(d, `${t.tensor} weight`), t.tensor);
    if (w.length !== t.rows * t.cols)
      throw new StageError({
        stage: ctx.stage,
        message: `${t.tensor} (${t.proj}): ${w.length} values, expected [${t.rows}, ${t.cols}]`,
        permanent: true,
      });
    cu.cudaUpload(dst, w, byteOffset);
  };
  try {
    for (let i = 0; i < E; i++) {
      put(batch.gate[i], gateUp, f32Bytes(i * 2 * I * H));
      put(batch.up[i], gateUp, f32Bytes((i * 2 + 1) * I * H));
      put(batch.down[i], down, f32Bytes(i * H * I));
    }
  } catch (e) {
    cu.cudaFree(gateUp);
    cu.cudaFree(down);
    throw e;
  }
  return { gateUp, down, dtype };
}

/**
 * Both Hessian stacks of the batch: one gather, one f32 Hessian update, one gate_up GEMM, SwiGLU and
 * a second Hessian update per expert, all on the device's stream. `scales` (Llama 4): the per-row
 * input scale of every CSR entry, else null.
 */
export async function deviceMoeStatistics(
  cu: CudaKernels,
  input: DeviceInput,
  batch: LayerBatch,
  plan: RowPlan,
  scales: Float32Array | null,
  weights: DeviceWeights,
  L: number,
): Promise<DeviceStatistics> {
  const { hidden: H, inter: I } = batch;
  const E = batch.experts.length;
  const dev = input.x.device;
  const total = plan.index.length;
  const held: CudaBuffer[] = [];
  const alloc = (bytes: number) => {
    const b = cu.cudaAlloc(Math.max(bytes, 4), dev);
    held.push(b);
    return b;
  };
  const hIn = cu.cudaAlloc(f32Bytes(E * H * H), dev);
  const hDown = cu.cudaAlloc(f32Bytes(E * I * I), dev);
  const slots: DeviceSlot[] = [];
  try {
    cu.cudaFillUniform(hIn, E * H * H, 0, 0, 0); // [0, 0): zeros
    cu.cudaFillUniform(hDown, E * I * I, 0, 0, 0);
    const index = alloc(f32Bytes(total));
    const w = alloc(f32Bytes(total));
    const s = scales ? alloc(f32Bytes(total)) : null;
    if (total > 0) {
      cu.cudaUpload(index, plan.index);
      cu.cudaUpload(w, plan.weights);
      if (s && scales) cu.cudaUpload(s, scales);
    }
    const xs = alloc(f32Bytes(plan.maxRows * H));
    const gu = alloc(f32Bytes(plan.maxRows * 2 * I));
    const a = alloc(f32Bytes(plan.maxRows * I));
    for (let i = 0; i < E; i++) {
      const t0 = performance.now();
      const r0 = plan.offsets[i];
      const n = plan.offsets[i + 1] - r0;
      let absIn = 0;
      let absDown = 0;
      if (n > 0) {
        const views: CudaBuffer[] = [];
        const view = (b: CudaBuffer, off: number, bytes: number) => {
          const v = cu.cudaView(b, off, bytes);
          views.push(v);
          return v;
        };
        try {
          const idx = view(index, f32Bytes(r0), f32Bytes(n));
          const wi = view(w, f32Bytes(r0), f32Bytes(n));
          const si = s ? view(s, f32Bytes(r0), f32Bytes(n)) : null;
          cu.cudaGatherRowsF32(input.x, input.rows, H, idx, n, si, xs);
          await cu.cudaHessianAccumulate(view(hIn, f32Bytes(i * H * H), f32Bytes(H * H)), xs, n, H, wi, "f32");
          absIn = cu.cudaAbsMaxF32(xs, n * H);
          // [n, 2I] = xs · [gate; up]ᵀ, then a = silu(gate part) · up part
          const wgu = view(weights.gateUp, f32Bytes(i * 2 * I * H), f32Bytes(2 * I * H));
          cu.cudaGemmF32(xs, wgu, gu, n, 2 * I, H, false, true, 1, 0, "f32");
          const upPart = view(gu, f32Bytes(I), f32Bytes(n * 2 * I - I));
          cu.cudaSwigluF32(gu, upPart, a, n, I, 2 * I, 1);
          await cu.cudaHessianAccumulate(view(hDown, f32Bytes(i * I * I), f32Bytes(I * I)), a, n, I, wi, "f32");
          absDown = cu.cudaAbsMaxF32(a, n * I);
        } finally {
          for (const v of views) cu.cudaFree(v);
        }
      }
      slots.push({ ms: performance.now() - t0, absIn, absDown });
    }
    if (slots.some((x) => !Number.isFinite(x.absIn) || !Number.isFinite(x.absDown))) {
      const i = slots.findIndex((x) => !Number.isFinite(x.absIn) || !Number.isFinite(x.absDown));
      throw new Error(
        `layer ${L} expert ${batch.experts[i]}: non-finite expert input (absmax ${slots[i].absIn}, ${slots[i].absDown})`,
      );
    }
  } catch (e) {
    cu.cudaFree(hIn);
    cu.cudaFree(hDown);
    throw e;
  } finally {
    for (const b of held) cu.cudaFree(b);
  }
  return { hIn, hDown, slots };
}

/** A cuda descriptor of one slot of a stacked tensor (the same allocation, no lease of its own). */
export function slotDescriptor(stack: TensorDescriptor, slot: number, shape: readonly number[]): TensorDescriptor {
  if (stack.loc.kind !== "cuda") throw new Error("slotDescriptor: not a cuda descriptor");
  const bytes = shape.reduce((p, v) => p * v, 1) * 4;
  return {
    dtype: stack.dtype,
    shape: [...shape],
    loc: { ...stack.loc, offset: stack.loc.offset + slot * bytes, bytes },
  };
}

/**
 * Leases the stacks to the quantizer and publishes the layer's two batched work items (their
 * ExpertCalibrated events first, in expert order, each inside its `calibrate` span with the
 * expert's statistics time).
 */
export async function handOff(
  ctx: StageContext,
  store: CudaTensorStore,
  L: number,
  batch: LayerBatch,
  plan: RowPlan,
  stats: DeviceStatistics,
  weights: DeviceWeights,
  options: Record<string, unknown>,
): Promise<void> {
  const { hidden: H, inter: I } = batch;
  const E = batch.experts.length;
  const slots = batch.experts.map((_, i) => ({
    tokens: plan.offsets[i + 1] - plan.offsets[i],
    weightMass: plan.mass[i],
  }));
  const [wGu, hIn, wDown, hDown] = [
    await store.put("f32", [E, 2 * I, H], weights.gateUp),
    await store.put("f32", [E, H, H], stats.hIn),
    await store.put("f32", [E, H, I], weights.down),
    await store.put("f32", [E, I, I], stats.hDown),
  ];
  for (let i = 0; i < E; i++) {
    const e = batch.experts[i];
    await tracing.expertSpan(L, e, async () => {
      for (const [t, hessian, absmax] of [
        [batch.gate[i], slotDescriptor(hIn, i, [H, H]), stats.slots[i].absIn],
        [batch.up[i], slotDescriptor(hIn, i, [H, H]), stats.slots[i].absIn],
        [batch.down[i], slotDescriptor(hDown, i, [I, I]), stats.slots[i].absDown],
      ] as const) {
        const work = {
          layer: L,
          expert: e,
          proj: t.proj,
          tokensRouted: slots[i].tokens,
          weightMass: slots[i].weightMass,
          bytes: hessian.loc.kind === "cuda" ? hessian.loc.bytes : 0,
          algorithm: slots[i].tokens > 0 ? "gptq" : "rtn",
          computeMs: stats.slots[i].ms,
        };
        await tracing.projectionSpan("calibrate", work, () =>
          ctx.emit({
            type: "ExpertCalibrated",
            payload: {
              layer: L,
              expert: e,
              proj: t.proj,
              hessian,
              tokens: slots[i].tokens,
              weightMass: slots[i].weightMass,
              inputAbsmax: absmax,
            },
          }),
        );
      }
    });
  }
  // the lease key names the allocation (a hash of its IPC handle): new after a restart
  const generation = (d: TensorDescriptor) =>
    d.loc.kind === "cuda" ? cudaLeaseKey(d.loc.handle, d.loc.offset).slice(5, 21) : "file";
  for (const [group, weight, hessian] of [
    ["experts.gate_up", wGu, hIn],
    ["experts.down", wDown, hDown],
  ] as const) {
    const payload = batchPayload(L, group as ExpertGroup, batch, slots, weight, hessian, weights.dtype, options);
    await ctx.queues.publish("quantize", {
      id: batchWorkId(ctx.runId, L, group as ExpertGroup, batch.experts[0], generation(weight)),
      runId: ctx.runId,
      kind: "quantize-batch",
      payload,
    });
  }
}
