// Every fixture folder of ../shared/fixtures/tiny-random whose model_type is registered, and the
// trained model, against transformers' goldens: logits (≤ 1.5e-5 max relative error, identical
// argmax), every hidden.<i> and router_logits.<j>. Folders of unregistered types must be exactly
// the list below, so registering an architecture without making it pass fails here.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadModel, supportedModelTypes } from "@moeq/models";
import { openSafetensors } from "@moeq/safetensors";
import { describe, expect, it } from "vitest";
import { argmaxMismatches, fixtureDirs, maxRelErr, trainedModel } from "./fixtures.ts";

const NOT_YET_REGISTERED = [];

/**
 * The fixtures' README: float32 agreement to about 1e-5 relative, one bound for every architecture.
 * The largest seen is qwen3_5_moe_text's logits at 1.06e-5 (its chunked gated delta rule sums in a
 * different order than transformers'); every other fixture and tensor is below 1e-5.
 */
const TOL = 1.5e-5;

async function checkAgainstGolden(dir: string) {
  const model = loadModel(dir);
  const golden = openSafetensors(join(dir, "golden.safetensors"));
  try {
    const idsT = golden.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    const r = await model.engine().forward(ids, B, T, { hiddenStates: true, routerLogits: true });
    const V = model.spec.vocabSize;
    const want = golden.f32("logits");
    expect(want.length).toBe(B * T * V);
    const report: Record<string, number> = { logits: maxRelErr(r.logits, want) };
    expect(argmaxMismatches(r.logits, want, V)).toEqual([]);
    const hidden = r.hiddenStates ?? [];
    const goldenHidden = golden.names().filter((n) => n.startsWith("hidden.")).length;
    if (goldenHidden > 0) expect(hidden.length).toBe(goldenHidden);
    for (let i = 0; i < goldenHidden; i++) report[`hidden.${i}`] = maxRelErr(hidden[i], golden.f32(`hidden.${i}`));
    const goldenRouter = golden.names().filter((n) => n.startsWith("router_logits.")).length;
    if (goldenRouter > 0) expect(r.routerLogits?.length).toBe(goldenRouter);
    for (let j = 0; j < goldenRouter; j++)
      report[`router_logits.${j}`] = maxRelErr(
        r.routerLogits?.[j] ?? new Float32Array(0),
        golden.f32(`router_logits.${j}`),
      );
    for (const [k, v] of Object.entries(report)) expect(v, `${dir}: ${k}`).toBeLessThanOrEqual(TOL);
    return report;
  } finally {
    golden.close();
    model.close();
  }
}

const registered = new Set(supportedModelTypes());
const fixtures = fixtureDirs();

describe("forward pass against transformers goldens", () => {
  it("finds the fixtures", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(registered.size);
  });

  it("every fixture folder of an unregistered model_type is in the not-yet-registered list, and vice versa", () => {
    const unsupported = fixtures.filter((f) => !registered.has(f.modelType)).map((f) => f.modelType);
    console.log(`fixtures without a registered architecture: ${unsupported.join(", ") || "none"}`);
    expect(unsupported.sort()).toEqual([...NOT_YET_REGISTERED].sort());
    for (const t of registered)
      expect(
        fixtures.some((f) => f.modelType === t),
        `a fixture for ${t}`,
      ).toBe(true);
  });

  for (const f of fixtures.filter((x) => registered.has(x.modelType)))
    it(`${f.name} (${f.modelType}) matches logits, hidden states and router logits`, async () => {
      await checkAgainstGolden(f.dir);
    });

  it("the trained tiny-qwen3moe-brown matches its golden logits", async () => {
    expect(existsSync(trainedModel)).toBe(true);
    const report = await checkAgainstGolden(trainedModel);
    expect(report.logits).toBeLessThanOrEqual(TOL);
  });
});
