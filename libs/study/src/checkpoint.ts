// A policy's quantized experts written as the packer writes them (compressed-tensors through
// @moeq/formats, the rest of the model passed through), so the evaluator's own function scores it.
import { type QuantizedModule, writeQuantizedCheckpoint } from "@moeq/formats";
import type { LoadedModel } from "@moeq/models";
import { dequantizeInt, type IntOutputs, moduleName, targetKey } from "@moeq/runtime";
import type { Tensor } from "@moeq/tensor";
import { expertTargets, type QuantSettings } from "./collect.ts";

export function writePolicyCheckpoint(
  dir: string,
  model: LoadedModel,
  modules: ReadonlyMap<string, IntOutputs>,
  q: QuantSettings,
): string {
  const targets = expertTargets(model);
  const mods: QuantizedModule[] = targets.map((t) => {
    const r = modules.get(targetKey(t));
    if (!r) throw new Error(`study: ${targetKey(t)} (${t.tensor}) was not quantized`);
    return {
      name: moduleName(t),
      weight: {
        kind: "int",
        rows: t.rows,
        cols: t.cols,
        result: {
          ...r,
          perm: null,
          dequant: dequantizeInt(r, t.rows, t.cols),
          bits: q.bits,
          groupSize: q.groupSize,
          symmetric: q.symmetric,
        },
      },
    };
  });
  const quantized = new Set(targets.map((t) => t.tensor));
  const passthrough = new Map<string, Tensor>();
  for (const n of model.source.names()) if (!quantized.has(n)) passthrough.set(n, model.source.tensor(n));
  return writeQuantizedCheckpoint(
    dir,
    "compressed-tensors",
    { modules: mods, passthrough, modelConfig: model.config },
    { sourceDir: model.dir },
  ).dir;
}
