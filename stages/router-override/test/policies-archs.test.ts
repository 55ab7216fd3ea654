// Every registered architecture's routing, as the engine exposes it, against what the soft
// policies call "probability": the combine weights of the selected experts must follow from it
// by the family's rule (renormalised, scaled, …), recomputed here in f64 from the raw logits.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSpec, type RawConfig, type RoutingSpec, route, supportedModelTypes } from "@moeq/models";
import { describe, expect, it } from "vitest";
import { routerProbabilities } from "../src/policies-probability.ts";

const fixtures = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "..",
  "shared",
  "fixtures",
  "tiny-random",
);
const configs = readdirSync(fixtures, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(fixtures, d.name, "config.json")))
  .map((d) => JSON.parse(readFileSync(join(fixtures, d.name, "config.json"), "utf8")) as RawConfig);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}

/** f64 reference of the family's probability from the logits. */
function reference(kind: RoutingSpec["kind"], z: Float32Array, rows: number, E: number): Float64Array {
  const p = new Float64Array(rows * E);
  const sigmoidFamily = kind === "sigmoid_bias" || kind === "topk_sigmoid";
  for (let t = 0; t < rows; t++) {
    const row = Array.from(z.subarray(t * E, (t + 1) * E));
    if (sigmoidFamily) for (let e = 0; e < E; e++) p[t * E + e] = 1 / (1 + Math.exp(-row[e]));
    else {
      const m = Math.max(...row);
      const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      for (let e = 0; e < E; e++) p[t * E + e] = Math.exp(row[e] - m) / s;
    }
  }
  return p;
}

/** The combine weight the family's rule gives from the selected experts' probabilities. */
function expectedWeights(spec: RoutingSpec, sel: number[]): number[] {
  const sum = sel.reduce((a, b) => a + b, 0);
  switch (spec.kind) {
    case "softmax_topk":
      if (!spec.normTopK) return sel;
      if (spec.normPower !== undefined && spec.normPower !== 1) {
        const n = sel.reduce((a, b) => a + Math.abs(b) ** spec.normPower!, 0) ** (1 / spec.normPower);
        return sel.map((v) => v / n);
      }
      return sel.map((v) => v / sum);
    case "topk_softmax":
      return sel.map((v) => v / sum);
    case "topk_sigmoid":
      return sel;
    case "sigmoid_bias":
      return sel.map((v) => (spec.normTopK ? v / sum : v) * spec.scale);
    case "softmax_group_limited":
      return sel.map((v) => v * spec.scale);
    case "softmax_bias":
      return sel.map((v) => v / Math.max(sum, spec.normMin));
    case "sparsemixer":
      return []; // checked separately: the first winner is the argmax, its weight ≥ its probability
  }
}

const seen = new Set<string>();

describe("router probabilities of every registered architecture", () => {
  it("has a fixture for every family in the routing spec", () => {
    const kinds = new Set<string>();
    for (const c of configs) {
      const { spec } = buildSpec(c);
      for (const l of spec.layers) if (l.mlp.kind === "moe") kinds.add(l.mlp.routing.kind);
    }
    expect([...kinds].sort()).toEqual(
      [
        "softmax_topk",
        "topk_softmax",
        "topk_sigmoid",
        "sparsemixer",
        "sigmoid_bias",
        "softmax_group_limited",
        "softmax_bias",
      ].sort(),
    );
  });

  it.each(configs.map((c) => [c.model_type as string, c] as const))(
    "%s: combine weights follow from the probabilities",
    (_, config) => {
      const { spec } = buildSpec(config);
      const moe = spec.layers.find((l) => l.mlp.kind === "moe")!.mlp;
      if (moe.kind !== "moe") throw new Error("no MoE layer");
      const rs = moe.routing;
      const E = moe.experts.numExperts;
      const rows = 37;
      const next = rng(E * 31 + rows);
      const logits = Float32Array.from({ length: rows * E }, () => 3 * next());
      // selection bias: zero keeps the selection on the probabilities themselves, so the test can find the selected experts' p
      const bias = "bias" in rs && rs.bias ? new Float32Array(E) : null;
      const r = route(rs, logits, rows, E, bias);
      const p = routerProbabilities(r, rs);
      const ref = reference(rs.kind, logits, rows, E);
      expect(p.length).toBe(rows * E);
      for (let i = 0; i < p.length; i++) expect(p[i]).toBeCloseTo(ref[i], 5);
      for (let t = 0; t < rows; t++) {
        const idx = Array.from(r.indices.subarray(t * r.topK, (t + 1) * r.topK));
        const w = Array.from(r.weights.subarray(t * r.topK, (t + 1) * r.topK));
        if (rs.kind === "sparsemixer") {
          const row = Array.from(ref.subarray(t * E, (t + 1) * E));
          expect(idx[0]).toBe(row.indexOf(Math.max(...row)));
          expect(w[0]).toBeGreaterThanOrEqual(row[idx[0]] - 1e-6);
          continue;
        }
        const want = expectedWeights(
          rs,
          idx.map((e) => ref[t * E + e]),
        );
        for (let j = 0; j < w.length; j++) expect(w[j]).toBeCloseTo(want[j], 5);
      }
      seen.add(config.model_type as string);
    },
  );

  it("covered every registered model type that has a fixture", () => {
    const withFixture = new Set(configs.map((c) => c.model_type as string));
    for (const t of supportedModelTypes()) if (withFixture.has(t)) expect(seen.has(t)).toBe(true);
  });
});
