// Config variants of the mid fixtures that switch on what their goldens leave off: Phi-MoE under
// LongRoPE with unit short factors must reproduce the default-RoPE golden (and switch to the long
// factors past original_max_position_embeddings); Llama 4's NoPE temperature must scale exactly the
// positions with floor((pos + 1) / floor_scale) ≥ 1 of the NoPE layer.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "@moeq/models";
import { openSafetensors } from "@moeq/safetensors";
import { afterAll, describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const tmp = mkdtempSync(join(tmpdir(), "moeq-mid-variants-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function variant(name: string, fields: Record<string, unknown>): string {
  const src = join(tinyRandom, name);
  const d = mkdtempSync(join(tmp, `${name}-`));
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, ...fields }));
  symlinkSync(join(src, "model.safetensors"), join(d, "model.safetensors"));
  return d;
}

async function goldenRun(dir: string, goldenDir: string) {
  const g = openSafetensors(join(goldenDir, "golden.safetensors"));
  const m = loadModel(dir);
  try {
    const idsT = g.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    const r = await m.engine().forward(ids, B, T);
    return maxRelErr(r.logits, g.f32("logits"));
  } finally {
    m.close();
    g.close();
  }
}

describe("Phi-MoE LongRoPE", () => {
  const phi = join(tinyRandom, "phimoe");
  const longrope = (originalMax: number) => ({
    rope_parameters: {
      rope_type: "longrope",
      rope_theta: 1e6,
      short_factor: new Array(8).fill(1),
      long_factor: new Array(8).fill(3),
      original_max_position_embeddings: originalMax,
      short_mscale: 1,
      long_mscale: 1,
    },
  });

  it("unit short factors and mscale 1 reproduce the default-RoPE golden", async () => {
    expect(await goldenRun(variant("phimoe", longrope(512)), phi)).toBeLessThan(1e-4);
  });

  it("past original_max_position_embeddings the long factors apply (24 positions > 16)", async () => {
    expect(await goldenRun(variant("phimoe", longrope(16)), phi)).toBeGreaterThan(1e-3);
  });
});

describe("Llama 4 NoPE temperature", () => {
  it("floor_scale 4 scales the NoPE layer's queries from position 3 on, and nothing else", async () => {
    const base = loadModel(join(tinyRandom, "llama4_text"));
    const hot = loadModel(variant("llama4_text", { floor_scale: 4 }));
    try {
      const T = 12;
      const ids = Array.from({ length: T }, (_, i) => (i * 29 + 3) % 257);
      const e0 = base.engine();
      const e1 = hot.engine();
      const seq = e0.sequences(1, T);
      const h = e0.embed(ids, seq);
      const H = base.spec.hiddenSize;
      for (let L = 0; L < base.spec.layers.length; L++) {
        const a = (await e0.attention(L, h, seq)).residual;
        const b = (await e1.attention(L, h, seq)).residual;
        const nope = base.spec.layers[L].attention.kind === "standard" && base.spec.layers[L].attention.rope === null;
        // causal: row t only sees queries at t, so rows 0..2 (scale 1) are untouched
        expect(maxRelErr(b.subarray(0, 3 * H), a.subarray(0, 3 * H)), `layer ${L} rows 0-2`).toBe(0);
        const later = maxRelErr(b.subarray(3 * H), a.subarray(3 * H));
        if (nope) expect(later, `layer ${L}`).toBeGreaterThan(1e-4);
        else expect(later, `layer ${L}`).toBe(0);
      }
    } finally {
      base.close();
      hot.close();
    }
  });
});
