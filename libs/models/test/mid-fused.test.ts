// Fused / packed expert tensors of the mid architectures as the quantizer sees them: every role's
// [out, in] matrix extracted from the on-disk tensor and written back reproduces the tensor byte
// for byte; each extracted expert, run through a plain formula, gives the engine's expert output
// (so the orientation is right); and the packer's per-expert module names.
import { join } from "node:path";
import { loadModel, quantizableWeights, type WeightRole, weightRoles } from "@moeq/models";
import { bf16BitsToF32 } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import { extractRoleMatrix, insertRoleMatrix, packTarget, refuseModules } from "../src/blocks/fused-tensors.ts";
import { tinyRandom } from "./fixtures.ts";

const bits = (data: Uint8Array) => new Uint16Array(data.slice().buffer);
const widen = (u: Uint16Array) => Float32Array.from(u, bf16BitsToF32);

describe("fused expert tensors: extract every matrix, re-fuse, same bytes", () => {
  for (const name of ["gpt_oss", "llama4_text", "dbrx", "granitemoe"])
    it(name, () => {
      const m = loadModel(join(tinyRandom, name));
      try {
        const roles = weightRoles(m.spec).filter((r) => r.fused || r.rowSlice);
        expect(roles.length).toBeGreaterThan(0);
        const byTensor = new Map<string, WeightRole[]>();
        for (const r of roles) byTensor.set(r.tensor, [...(byTensor.get(r.tensor) ?? []), r]);
        for (const [tensor, rs] of byTensor) {
          const t = m.checkpoint.tensor(tensor);
          const orig = bits(t.data);
          // a sentinel no bf16 weight here has, so a hole in the coverage shows
          const rebuilt = new Uint16Array(orig.length).fill(0x7fc1);
          for (const r of rs) insertRoleMatrix(r, rebuilt, t.shape, extractRoleMatrix(r, orig, t.shape));
          expect(Buffer.from(rebuilt.buffer).equals(Buffer.from(orig.buffer)), tensor).toBe(true);
        }
      } finally {
        m.close();
      }
    });
});

/** y = D·(act(G·x + bg) ⊙ (U·x + bu)) + bd for one row, from [out, in] matrices. */
function plainExpert(
  x: Float32Array,
  G: Float32Array,
  U: Float32Array,
  D: Float32Array,
  H: number,
  I: number,
  glu: (g: number, u: number) => number,
  bias?: { g: Float32Array; u: Float32Array; d: Float32Array },
): Float64Array {
  const h = new Float64Array(I);
  for (let i = 0; i < I; i++) {
    let g = bias ? bias.g[i] : 0;
    let u = bias ? bias.u[i] : 0;
    for (let j = 0; j < H; j++) {
      g += G[i * H + j] * x[j];
      u += U[i * H + j] * x[j];
    }
    h[i] = glu(g, u);
  }
  const y = new Float64Array(H);
  for (let o = 0; o < H; o++) {
    let s = bias ? bias.d[o] : 0;
    for (let i = 0; i < I; i++) s += D[o * I + i] * h[i];
    y[o] = s;
  }
  return y;
}

const silu = (g: number, u: number) => (g / (1 + Math.exp(-g))) * u;
const gptOssGlu = (g: number, u: number) => {
  const gc = Math.min(g, 7);
  const uc = Math.max(-7, Math.min(7, u));
  return (uc + 1) * (gc / (1 + Math.exp(-1.702 * gc)));
};

describe("extracted expert matrices are in Linear [out, in] orientation", () => {
  for (const name of ["gpt_oss", "llama4_text", "dbrx", "granitemoe"])
    it(`${name}: a plain forward on the extracted matrices equals the engine's expert`, async () => {
      const m = loadModel(join(tinyRandom, name));
      try {
        const L = 1;
        const moe = m.spec.layers[L].mlp;
        if (moe.kind !== "moe") throw new Error("expected an MoE layer");
        const { hidden: H, intermediate: I, numExperts: E } = moe.experts;
        const x = Float32Array.from({ length: 3 * H }, (_, i) => Math.sin(i * 0.37) * 0.8);
        const engine = m.engine();
        for (const e of [0, E - 1]) {
          const mat = (p: WeightRole["projection"]) => {
            const r = weightRoles(m.spec).find((q) => q.layer === L && q.expert === e && q.projection === p);
            if (!r) throw new Error(`no role ${p}`);
            const t = m.checkpoint.tensor(r.tensor);
            return widen(extractRoleMatrix(r, bits(t.data), t.shape));
          };
          const [G, U, D] = [mat("gate_proj"), mat("up_proj"), mat("down_proj")];
          expect([G.length, U.length, D.length]).toEqual([I * H, I * H, H * I]);
          let bias: { g: Float32Array; u: Float32Array; d: Float32Array } | undefined;
          if (moe.experts.layout.kind === "fused" && moe.experts.layout.gateUpBias && moe.experts.layout.downBias) {
            const gu = widen(bits(m.checkpoint.tensor(moe.experts.layout.gateUpBias).data)).subarray(
              e * 2 * I,
              (e + 1) * 2 * I,
            );
            const d = widen(bits(m.checkpoint.tensor(moe.experts.layout.downBias).data)).subarray(e * H, (e + 1) * H);
            bias = { g: gu.filter((_, i) => i % 2 === 0), u: gu.filter((_, i) => i % 2 === 1), d };
          }
          const { out } = await engine.expert(L, e, x);
          for (let r = 0; r < 3; r++) {
            const want = plainExpert(
              x.subarray(r * H, (r + 1) * H),
              G,
              U,
              D,
              H,
              I,
              moe.experts.clampedGlu ? gptOssGlu : silu,
              bias,
            );
            let err = 0;
            let scale = 0;
            for (let o = 0; o < H; o++) {
              err = Math.max(err, Math.abs(out[r * H + o] - want[o]));
              scale = Math.max(scale, Math.abs(want[o]));
            }
            expect(err / scale, `${name} expert ${e} row ${r}`).toBeLessThan(1e-5);
          }
        }
      } finally {
        m.close();
      }
    });
});

describe("what the quantizer and packer see", () => {
  it("per-expert roles with shapes; packer targets per-expert module names, or the fused Wqkv rows", () => {
    const cases: [string, number, string, string][] = [
      ["gpt_oss", 3 * (4 + 8 * 3), "model.layers.2.mlp.experts.5.up_proj", "model.layers.2.mlp.experts.gate_up_proj"],
      [
        "llama4_text",
        4 * (4 + 8 * 3 + 3),
        "model.layers.2.feed_forward.experts.5.up_proj",
        "model.layers.2.feed_forward.experts.gate_up_proj",
      ],
      [
        "granitemoe",
        3 * (4 + 8 * 3),
        "model.layers.2.block_sparse_moe.experts.5.w3",
        "model.layers.2.block_sparse_moe.input_linear.weight",
      ],
      ["dbrx", 3 * (4 + 8 * 3), "transformer.blocks.2.ffn.experts.mlp.5.v1", "transformer.blocks.2.ffn.experts.mlp.v1"],
      [
        "phimoe",
        3 * (4 + 8 * 3),
        "model.layers.2.block_sparse_moe.experts.5.w3",
        "model.layers.2.block_sparse_moe.experts.5.w3.weight",
      ],
    ];
    for (const [name, count, module, tensor] of cases) {
      const m = loadModel(join(tinyRandom, name));
      try {
        const q = quantizableWeights(m.arch, m.spec);
        expect(q.length, name).toBe(count);
        const up = q.find((r) => r.layer === 2 && r.expert === 5 && r.projection === "up_proj");
        expect(up?.tensor, name).toBe(tensor);
        expect(up?.shape, name).toEqual([
          name === "gpt_oss" || name === "dbrx" || name === "llama4_text" ? 32 : 96,
          64,
        ]);
        expect(packTarget(m.spec, up as WeightRole).module, name).toBe(module);
        // routers are never quantized
        expect(q.some((r) => r.tensor.includes("router") || r.tensor.endsWith(".gate.weight"))).toBe(false);
      } finally {
        m.close();
      }
    }
  });

  it("DBRX: q/k/v are row ranges of Wqkv; the packer writes them back into Wqkv", () => {
    const m = loadModel(join(tinyRandom, "dbrx"));
    try {
      const att = quantizableWeights(m.arch, m.spec).filter((r) => r.layer === 0 && r.module === "attention");
      expect(att.map((r) => [r.projection, r.shape, r.rowSlice?.start])).toEqual([
        ["q_proj", [64, 64], 0],
        ["k_proj", [32, 64], 64],
        ["v_proj", [32, 64], 96],
        ["o_proj", [64, 64], undefined],
      ]);
      // re-fusing a whole Wqkv module matrix (here: doubled) fills q, k and v back in place
      const w = "transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight";
      const doubled = widen(bits(m.checkpoint.tensor(w).data)).map((v) => v * 2);
      const re = refuseModules(m.spec, att, m.source, (mod) => (mod === w.slice(0, -7) ? doubled : undefined));
      expect([...re.keys()]).toEqual([w]);
      const t = re.get(w);
      expect(t?.shape).toEqual([128, 64]);
      expect(Array.from(new Float32Array((t as { data: Uint8Array }).data.buffer))).toEqual(Array.from(doubled));
      expect(packTarget(m.spec, att[2])).toEqual({
        module: "transformer.blocks.0.norm_attn_norm.attn.Wqkv",
        rowOffset: 96,
        rows: 32,
      });
    } finally {
      m.close();
    }
  });

  it("a tensor whose shape does not fit the role is a typed error naming it", () => {
    const m = loadModel(join(tinyRandom, "gpt_oss"));
    try {
      const r = weightRoles(m.spec).find((q) => q.fused && q.projection === "gate_proj") as WeightRole;
      expect(() => extractRoleMatrix(r, new Uint16Array(8 * 64 * 62), [8, 64, 62])).toThrow(
        /gate_up_proj' has shape \[8,64,62\]/,
      );
      expect(() => extractRoleMatrix({ ...r, expert: 9 }, new Uint16Array(8 * 64 * 64), [8, 64, 64])).toThrow(
        /expert 9 is out of range/,
      );
      expect(() => extractRoleMatrix(r, new Uint16Array(10), [8, 64, 64])).toThrow(/has 10 elements/);
    } finally {
      m.close();
    }
  });
});
