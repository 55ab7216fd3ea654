// DBRX layer by layer from the golden's own inputs: each layer's output within the forward test's
// bound of the golden, so an error is pinned to the layer that makes it (the whole-model check is
// forward.test.ts). The fixture was regenerated on 2026-12-08 with ordinary attention weights; the
// old one drew them like norm weights (≈ 1), which made layers 1+ ill-conditioned in f32.
import { join } from "node:path";
import { loadModel } from "@moeq/models";
import { openSafetensors } from "@moeq/safetensors";
import { describe, expect, it } from "vitest";
import { maxRelErr, tinyRandom } from "./fixtures.ts";

const dir = join(tinyRandom, "dbrx");

describe("DBRX golden, layer by layer", () => {
  it("every layer maps the golden hidden.i to hidden.i+1 within 1e-5", async () => {
    const m = loadModel(dir);
    const g = openSafetensors(join(dir, "golden.safetensors"));
    try {
      const engine = m.engine();
      const [B, T] = g.tensor("input_ids").shape;
      const seq = engine.sequences(B, T);
      const layers = engine.numLayers;
      expect(layers).toBeGreaterThanOrEqual(2);
      // the last hidden state has the final norm applied: apply it to the last layer's output
      for (let L = 0; L < layers; L++) {
        let out = await engine.runLayer(L, g.f32(`hidden.${L}`), seq);
        if (L === layers - 1) out = engine.finalNorm(out);
        expect(maxRelErr(out, g.f32(`hidden.${L + 1}`)), `layer ${L}`).toBeLessThan(1e-5);
      }
    } finally {
      g.close();
      m.close();
    }
  });
});
