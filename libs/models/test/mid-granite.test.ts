// Granite-MoE's multipliers, which the fixture leaves at 1 (so its golden does not exercise them):
// the same checkpoint under a config with other multipliers must follow their definitions
// (transformers' GraniteMoeModel / DecoderLayer / ForCausalLM) relative to the multiplier-1 model.
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "@moeq/models";
import { afterAll, describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const src = join(tinyRandom, "granitemoe");
const tmp = mkdtempSync(join(tmpdir(), "moeq-granite-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function variant(name: string, fields: Record<string, number>): string {
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  const d = mkdtempSync(join(tmp, `${name}-`));
  writeFileSync(join(d, "config.json"), JSON.stringify({ ...cfg, ...fields }));
  symlinkSync(join(src, "model.safetensors"), join(d, "model.safetensors"));
  return d;
}

const ids = Array.from({ length: 2 * 12 }, (_, i) => (i * 53 + 7) % 257);

describe("Granite-MoE multipliers", () => {
  it("embedding_multiplier scales hidden.0; logits_scaling divides the logits", async () => {
    const base = loadModel(src);
    const m = loadModel(variant("mult", { embedding_multiplier: 3, logits_scaling: 4 }));
    try {
      const seq = base.engine().sequences(2, 12);
      const e1 = base.engine().embed(ids, seq);
      const e3 = m.engine().embed(ids, seq);
      expect(Array.from(e3)).toEqual(Array.from(e1, (v) => Math.fround(v * 3)));
      const h = e1.map(() => 0.25);
      const l1 = await base.engine().logits(base.engine().finalNorm(h));
      const l4 = await m.engine().logits(m.engine().finalNorm(h));
      expect(Array.from(l4)).toEqual(Array.from(l1, (v) => Math.fround(v / 4)));
    } finally {
      base.close();
      m.close();
    }
  });

  it("residual_multiplier scales the attention and MoE outputs before each residual add", async () => {
    const base = loadModel(src);
    const m = loadModel(variant("resid", { residual_multiplier: 0.22 }));
    try {
      const b = base.engine();
      const q = m.engine();
      const seq = b.sequences(2, 12);
      const h = b.embed(ids, seq);
      const a1 = await b.attention(0, h, seq);
      const ar = await q.attention(0, h, seq);
      const want = h.map((v, i) => v + Math.fround((a1.residual[i] - v) * 0.22));
      expect(maxRelErr(ar.residual, want)).toBeLessThan(1e-6);
      const y = await q.moe(0, ar.x);
      const out = q.finishLayer(ar.residual, y);
      expect(
        maxRelErr(
          out,
          ar.residual.map((v, i) => v + Math.fround(y[i] * 0.22)),
        ),
      ).toBeLessThan(1e-7);
    } finally {
      base.close();
      m.close();
    }
  });

  it("attention_multiplier is the softmax scale (replacing 1/√head_dim)", () => {
    const m = loadModel(variant("attn", { attention_multiplier: 0.015625 }));
    try {
      expect(m.spec.layers.every((L) => L.attention.kind === "standard" && L.attention.scale === 0.015625)).toBe(true);
    } finally {
      m.close();
    }
  });
});
