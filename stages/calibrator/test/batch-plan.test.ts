// The host side of the batched --device cuda hand-off (no GPU needed): which MoE layers the batched
// statistics cover, each expert's calibration rows as one CSR (the rows and weights the per-expert
// CPU path uses), and the quantize-batch payload: schema-valid, gate and up rows of one expert
// stacked on one Hessian, the no-token expert marked RTN, ids that change with the hand-off's
// allocation so a resumed calibrator's batch is not dropped as a duplicate.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { QuantizeBatchWork, type TensorDescriptor, validate } from "@moeq/contracts";
import { buildSpec, type MoeSpec, type RawConfig } from "@moeq/models";
import { quantTargets } from "@moeq/runtime";
import { Result } from "effect";
import { describe, expect, it } from "vitest";
import {
  batchPayload,
  batchWorkId,
  expertChunks,
  type LayerBatch,
  layerBatch,
  NO_TOKENS,
  rowPlan,
  slicePlan,
  slotBytes,
} from "../src/batch-plan.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const fixture = (name: string) => join(root, "..", "shared", "fixtures", "tiny-random", name, "config.json");

function layer(name: string, targets: "experts" | "all-linear" = "experts") {
  const { arch, spec } = buildSpec(JSON.parse(readFileSync(fixture(name), "utf8")) as RawConfig);
  const L = spec.layers.findIndex((l) => l.mlp.kind === "moe");
  const m = spec.layers[L].mlp as MoeSpec;
  return { m, L, targets: quantTargets(arch, spec, targets).filter((t) => t.layer === L) };
}

const cudaDesc = (shape: number[], fill: number): TensorDescriptor => ({
  dtype: "f32",
  shape,
  loc: {
    kind: "cuda",
    device: 0,
    handle: new Uint8Array(64).fill(fill),
    offset: 0,
    bytes: shape.reduce((p, v) => p * v, 4),
  },
});

describe("layerBatch", () => {
  it("covers SiLU-gated experts of every layout with all three projections, ascending", () => {
    for (const name of ["qwen3_moe", "mixtral", "llama4_text", "deepseek_v3"]) {
      const { m, targets } = layer(name);
      const b = layerBatch(m, targets);
      if (typeof b === "string") throw new Error(`${name}: ${b}`);
      expect(b.experts).toEqual([...Array(m.experts.numExperts).keys()]);
      expect(b.gate.map((t) => t.proj)).toEqual(b.experts.map(() => "gate_proj"));
      expect(b.down.every((t, i) => t.expert === b.experts[i] && t.rows === b.hidden && t.cols === b.inter)).toBe(true);
      // attention targets (all-linear) do not change what the batch holds
      const all = layer(name, "all-linear");
      const b2 = layerBatch(all.m, all.targets);
      expect(typeof b2 === "string" ? b2 : b2.experts).toEqual(b.experts);
    }
  });

  it("leaves clamped-SwiGLU / biased experts and partly targeted experts to the per-expert path, saying why", () => {
    const gptOss = layer("gpt_oss");
    expect(layerBatch(gptOss.m, gptOss.targets)).toMatch(/clamped SwiGLU|biases/);
    const q = layer("qwen3_moe");
    const noUp1 = q.targets.filter((t) => !(t.expert === 1 && t.proj === "up_proj"));
    expect(layerBatch(q.m, noUp1)).toBe("expert 1 is not targeted in all of gate_proj, up_proj, down_proj");
    expect(layerBatch(q.m, [])).toBe("no routed-expert targets");
  });
});

describe("rowPlan", () => {
  it("gives each expert the rows with weight > 0 in row order, their raw weights and f64 mass", () => {
    const E = 4;
    // rows × experts; expert 2 has no rows, expert 3 all of them (soft-like), others routed-like
    const calib = Float32Array.from([0.5, 0, 0, 0.1, 0, 1, 0, 0.2, 0.25, 0.75, 0, 0.3, 0, 0, 0, 0.4, 1e-8, 0, 0, 0.5]);
    const rows = calib.length / E;
    const p = rowPlan(calib, rows, E, [0, 1, 2, 3]);
    const slot = (i: number) => Array.from(p.index.subarray(p.offsets[i], p.offsets[i + 1]));
    expect([0, 1, 2, 3].map(slot)).toEqual([[0, 2, 4], [1, 2], [], [0, 1, 2, 3, 4]]);
    for (let i = 0; i < 4; i++) {
      const used = slot(i);
      const w = Float32Array.from(used, (t) => calib[t * E + i]);
      expect(Array.from(p.weights.subarray(p.offsets[i], p.offsets[i + 1]))).toEqual(Array.from(w));
      // the per-expert CPU path's mass: the same reduce over the same f32 values
      expect(p.mass[i]).toBe(w.reduce((s, v) => s + v, 0));
    }
    expect(p.maxRows).toBe(5);
    // a subset of experts keeps their slots in the order given
    const sub = rowPlan(calib, rows, E, [1, 3]);
    expect(Array.from(sub.offsets)).toEqual([0, 2, 7]);
  });
});

describe("batchPayload", () => {
  it("stacks gate then up rows on one Hessian, down on its own, validates, marks the no-token expert RTN", () => {
    const { m, L, targets } = layer("qwen3_moe");
    const b = layerBatch(m, targets);
    if (typeof b === "string") throw new Error(b);
    const E = b.experts.length;
    const { hidden: H, inter: I } = b;
    const slots = b.experts.map((_, i) => ({ tokens: i === 1 ? 0 : 10 + i, weightMass: i === 1 ? 0 : 2.5 + i }));
    const opts = { bits: 4, groupSize: 32, symmetric: false, actOrder: true, damp: 0.01 };
    const gu = batchPayload(
      L,
      "experts.gate_up",
      b,
      slots,
      cudaDesc([E, 2 * I, H], 1),
      cudaDesc([E, H, H], 2),
      "bf16",
      opts,
    );
    const dn = batchPayload(L, "experts.down", b, slots, cudaDesc([E, H, I], 3), cudaDesc([E, I, I], 4), "bf16", opts);
    for (const p of [gu, dn]) {
      const v = validate(QuantizeBatchWork, p, "payload");
      expect(Result.isSuccess(v)).toBe(true);
      expect(p.experts.map((e) => e.expert)).toEqual(b.experts);
      expect(p.experts[1].fallback).toBe(NO_TOKENS);
      expect(p.experts.filter((e) => e.fallback).length).toBe(1);
    }
    expect(gu.experts[0].projections).toEqual([
      { proj: "gate_proj", tensor: b.gate[0].tensor, rowStart: 0, rows: I },
      { proj: "up_proj", tensor: b.up[0].tensor, rowStart: I, rows: I },
    ]);
    expect(dn.experts[2].projections).toEqual([{ proj: "down_proj", tensor: b.down[2].tensor, rowStart: 0, rows: H }]);
    expect(gu.experts[2]).toMatchObject({ tokens: 12, weightMass: 4.5 });
    // one item per (layer, projection kind): the bus carries 2 messages per MoE layer, not 3·E
    expect(new Set([gu, dn].map((p) => p.group)).size).toBe(2);
  });

  it("ids: one per (layer, chunk, kind, generation)", () => {
    const a = batchWorkId("run1", 3, "experts.down", 0, "aaaa");
    expect(a).toBe("run1/3/0/experts.down/quantize@aaaa");
    expect(batchWorkId("run1", 3, "experts.down", 0, "bbbb")).not.toBe(a);
    expect(batchWorkId("run1", 3, "experts.gate_up", 0, "aaaa")).not.toBe(a);
    expect(batchWorkId("run1", 3, "experts.down", 64, "aaaa")).not.toBe(a);
  });
});

describe("expertChunks / slicePlan", () => {
  const fake = (E: number, H: number, I: number): LayerBatch => {
    const t = (e: number, proj: string) => ({ expert: e, proj }) as unknown as LayerBatch["gate"][number];
    const experts = [...Array(E).keys()];
    return {
      experts,
      gate: experts.map((e) => t(e, "gate_proj")),
      up: experts.map((e) => t(e, "up_proj")),
      down: experts.map((e) => t(e, "down_proj")),
      hidden: H,
      inter: I,
    };
  };
  it("Qwen3-30B-A3B's layer is one chunk under 32 GiB; DeepSeek-V3's is cut so each chunk fits", () => {
    const budget = 32 * 2 ** 30;
    expect(expertChunks(fake(128, 2048, 768), budget)).toHaveLength(1);
    const ds = expertChunks(fake(256, 7168, 2048), budget);
    expect(ds.length).toBeGreaterThan(10);
    expect(ds.flatMap((c) => c.experts)).toEqual([...Array(256).keys()]);
    for (const c of ds) {
      expect(c.experts.length * slotBytes(7168, 2048)).toBeLessThanOrEqual(budget);
      expect(c.down.map((t) => t.expert)).toEqual(c.experts);
    }
    // a budget below one expert still makes progress, one expert at a time
    expect(expertChunks(fake(3, 7168, 2048), 1).map((c) => c.experts)).toEqual([[0], [1], [2]]);
  });
  it("a chunk's plan is the full plan's slots, rebased", () => {
    const E = 4;
    const calib = Float32Array.from({ length: 6 * E }, (_, i) => ((i * 7) % 5) / 4);
    const full = rowPlan(calib, 6, E, [0, 1, 2, 3]);
    const part = slicePlan(full, 1, 3);
    const direct = rowPlan(calib, 6, E, [1, 2]);
    expect(Array.from(part.offsets)).toEqual(Array.from(direct.offsets));
    expect(Array.from(part.index)).toEqual(Array.from(direct.index));
    expect(Array.from(part.weights)).toEqual(Array.from(direct.weights));
    expect(Array.from(part.mass)).toEqual(Array.from(direct.mass));
    expect(part.maxRows).toBe(direct.maxRows);
  });
});
