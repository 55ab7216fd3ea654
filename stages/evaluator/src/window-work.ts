// Work items of a distributed evaluation. `evaluate` (home → workers): one batch of windows and
// the files of both models as `file` descriptors of the home host, which a worker elsewhere
// fetches through the home host's file server and the run's object store. `evaluated`
// (workers → home): the batch's per-token scores, handed back into the work dir.
import { NonNegativeInt, TensorDescriptor } from "@moeq/contracts";
import { Schema } from "effect";

export const EVALUATE_QUEUE = "evaluate";
export const EVALUATED_QUEUE = "evaluated";

export const CheckpointFile = Schema.Struct({
  /** file name inside the model directory (no path separators) */
  name: Schema.String,
  /** the whole file as u8[size], with its sha256 */
  file: TensorDescriptor,
});
export type CheckpointFile = typeof CheckpointFile.Type;

/** Payload of `evaluate-windows` items (queue `evaluate`). */
export const EvaluateWindowsWork = Schema.Struct({
  /** one evaluation attempt of the evaluator stage; results of another attempt are ignored */
  evaluation: Schema.String,
  b0: NonNegativeInt,
  nb: NonNegativeInt,
  seqLen: NonNegativeInt,
  /** i32[nb, seqLen] token ids, inline */
  ids: TensorDescriptor,
  /** measure the per-layer MoE error (the evaluation's first batch) */
  layerErrors: Schema.Boolean,
  reference: Schema.Array(CheckpointFile),
  quantized: Schema.Array(CheckpointFile),
  /** the home evaluation's plain options that shape the forward (activations, ...), passed on as they are */
  forward: Schema.Record(Schema.String, Schema.Union([Schema.String, Schema.Number, Schema.Boolean])),
});
export type EvaluateWindowsWork = typeof EvaluateWindowsWork.Type;

const LayerStatsSchema = Schema.Struct({
  layer: NonNegativeInt,
  outputRelError: Schema.NullOr(Schema.Number),
  tokens: Schema.Number,
});

/** Payload of `windows-scored` items (queue `evaluated`). */
export const WindowsScored = Schema.Struct({
  evaluation: Schema.String,
  b0: NonNegativeInt,
  nb: NonNegativeInt,
  /** host id of the worker that scored the batch */
  host: Schema.String,
  /** encodeTokenScores bytes as u8[n], a `file` under the home host's work dir */
  scores: TensorDescriptor,
  layers: Schema.optionalKey(Schema.Array(LayerStatsSchema)),
});
export type WindowsScored = typeof WindowsScored.Type;

// Options that only concern the home side's loop or the windows an item already carries.
const NOT_FORWARDED = new Set([
  "referenceDir",
  "quantizedDir",
  "texts",
  "seed",
  "batchWindows",
  "cacheDir",
  "layerErrors",
]);

/** The plain (string, number, boolean) evaluation options a worker must use for the same forward. */
export function forwardOptions(o: object): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(o))
    if (!NOT_FORWARDED.has(k) && (typeof v === "string" || typeof v === "number" || typeof v === "boolean")) out[k] = v;
  return out;
}

export const evaluateItemId = (runId: string, evaluation: string, b0: number) =>
  `${runId}/evaluate/${evaluation}/${b0}`;
export const scoredItemId = (runId: string, evaluation: string, b0: number) => `${runId}/evaluated/${evaluation}/${b0}`;
