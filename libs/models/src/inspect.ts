// The facts `moeq inspect` prints: layers, which are MoE, experts, top-k, parameter counts,
// bytes by dtype and the quantizable tensors.
import type { LoadedModel } from "./model.ts";
import { architectureNote } from "./registry.ts";
import { expectedTensors, quantizableWeights, unusedTensors } from "./tensors.ts";

export interface ModelSummary {
  readonly modelType: string;
  /** set when the architecture was chosen by architectures[0] (model_type not registered) */
  readonly architectureNote?: string;
  readonly difficulty: string;
  readonly numLayers: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
  readonly moeLayers: number[];
  readonly denseLayers: number[];
  readonly experts: number | null;
  readonly topK: number | null;
  readonly sharedExperts: boolean;
  readonly routing: string | null;
  /** parameters in the checkpoint / in the forward pass / active per token (top-k experts only) */
  readonly parameters: { readonly checkpoint: number; readonly model: number; readonly activePerToken: number };
  readonly bytesByDtype: Record<string, number>;
  readonly quantizable: { readonly tensors: number; readonly parameters: number; readonly names: string[] };
  /** checkpoint tensors the forward pass never reads (copied to the output unchanged, not quantized) */
  readonly unusedTensors: string[];
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

export function summarize(m: LoadedModel): ModelSummary {
  const { spec, checkpoint } = m;
  const bytesByDtype: Record<string, number> = {};
  let ckptParams = 0;
  for (const n of checkpoint.names()) {
    const e = checkpoint.entry(n);
    bytesByDtype[e.dtype] = (bytesByDtype[e.dtype] ?? 0) + e.byteLength;
    ckptParams += numel(e.shape);
  }
  const expected = expectedTensors(spec);
  const modelParams = expected.reduce((s, t) => s + numel(t.shape), 0);
  let inactive = 0;
  const moe = spec.layers.filter((l) => l.mlp.kind === "moe");
  for (const l of moe) {
    if (l.mlp.kind !== "moe") continue;
    const { numExperts: E, hidden: H, intermediate: I } = l.mlp.experts;
    inactive += (E - l.mlp.routing.topK) * 3 * H * I;
  }
  const first = moe[0]?.mlp;
  const q = quantizableWeights(m.arch, spec);
  const qNames = [...new Set(q.map((r) => r.tensor))];
  const note = architectureNote(m.config);
  return {
    modelType: spec.modelType,
    ...(note ? { architectureNote: note } : {}),
    difficulty: m.arch.difficulty,
    numLayers: spec.layers.length,
    hiddenSize: spec.hiddenSize,
    vocabSize: spec.vocabSize,
    moeLayers: moe.map((l) => l.index),
    denseLayers: spec.layers.filter((l) => l.mlp.kind === "dense").map((l) => l.index),
    experts: first?.kind === "moe" ? first.experts.numExperts : null,
    topK: first?.kind === "moe" ? first.routing.topK : null,
    sharedExperts: moe.some((l) => l.mlp.kind === "moe" && l.mlp.shared !== undefined),
    routing: first?.kind === "moe" ? first.routing.kind : null,
    parameters: { checkpoint: ckptParams, model: modelParams, activePerToken: modelParams - inactive },
    bytesByDtype,
    quantizable: {
      tensors: qNames.length,
      parameters: q.reduce((s, r) => s + r.shape[0] * r.shape[1], 0),
      names: qNames,
    },
    unusedTensors: unusedTensors(spec, m.source),
  };
}
