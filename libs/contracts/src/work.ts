import { Schema } from "effect";
import { ErrorInfo } from "./events.ts";
import { Bytes, NonNegativeInt, RunId, Traceparent } from "./ids.ts";
import { TensorDescriptor } from "./tensor.ts";

export const WorkItem = Schema.Struct({
  id: Schema.String.annotate({ description: "deterministic run/layer/expert/proj/stage; also the Nats-Msg-Id" }),
  runId: RunId,
  kind: Schema.String.annotate({ description: "what to do, e.g. quantize-expert; the consumer's stage decides" }),
  payload: Schema.Record(Schema.String, Schema.Unknown),
  traceparent: Schema.optionalKey(Traceparent),
}).annotate({ identifier: "WorkItem", description: "a unit of work on moeq.<runId>.work.<queue>" });
export type WorkItem = typeof WorkItem.Type;

/** Payload of `quantize-expert` work (queue `quantize`). */
export const QuantizeExpertWork = Schema.Struct({
  layer: NonNegativeInt,
  expert: NonNegativeInt,
  proj: Schema.String,
  weight: TensorDescriptor,
  hessian: TensorDescriptor,
  algorithm: Schema.String,
  options: Schema.Record(Schema.String, Schema.Unknown),
}).annotate({ identifier: "QuantizeExpertWork" });

/** One expert's rows in a batched work item: which projections its stacked rows hold. */
export const BatchExpert = Schema.Struct({
  expert: NonNegativeInt,
  tokens: NonNegativeInt,
  weightMass: Schema.Finite.annotate({ description: "Σ of the expert's calibration weights (GPTQ's 2/Σw)" }),
  projections: Schema.Array(
    Schema.Struct({
      proj: Schema.String,
      tensor: Schema.String,
      rowStart: NonNegativeInt.annotate({ description: "first row of this projection in the expert's stacked rows" }),
      rows: NonNegativeInt,
    }),
  ),
  fallback: Schema.optionalKey(
    Schema.String.annotate({ description: "why this expert is quantized with RTN instead (no calibration tokens)" }),
  ),
}).annotate({ identifier: "BatchExpert" });
export type BatchExpert = typeof BatchExpert.Type;

/**
 * Payload of `quantize-batch` work (queue `quantize`): GPTQ of every listed expert of one (layer,
 * projection kind) in one batched call. weight [E, rows, cols] stacks each expert's projections
 * (gate then up rows share one Hessian); hessian [E, cols, cols] holds the raw weighted sums
 * Σ w·x·xᵀ (the quantizer applies 2/weightMass). On one host both are `cuda` descriptors (leased
 * to this item's consumer); elsewhere files.
 */
export const QuantizeBatchWork = Schema.Struct({
  layer: NonNegativeInt,
  group: Schema.String.annotate({ description: "projection kind, e.g. experts.gate_up or experts.down" }),
  weight: TensorDescriptor,
  hessian: TensorDescriptor,
  experts: Schema.Array(BatchExpert),
  weightDtype: Schema.String.annotate({
    description: "the checkpoint dtype of these weights (scale dtypes follow it)",
  }),
  algorithm: Schema.String,
  options: Schema.Record(Schema.String, Schema.Unknown),
}).annotate({ identifier: "QuantizeBatchWork" });
export type QuantizeBatchWork = typeof QuantizeBatchWork.Type;

export const DeadLetterReason = Schema.Literals([
  "malformed", // not msgpack
  "invalid", // msgpack, but not schema-valid
  "rejected", // valid, but the handler refused it permanently (bad descriptor, wrong size, ...)
  "exhausted", // failed on every allowed delivery
]).annotate({ identifier: "DeadLetterReason" });

export const DeadLetter = Schema.Struct({
  runId: RunId,
  queue: Schema.String,
  subject: Schema.String,
  reason: DeadLetterReason,
  error: ErrorInfo,
  deliveries: NonNegativeInt,
  streamSeq: NonNegativeInt,
  msgId: Schema.optionalKey(Schema.String),
  time: Schema.String,
  original: Bytes.annotate({ description: "the message's bytes as received" }),
}).annotate({ identifier: "DeadLetter", description: "record on moeq.<runId>.dlq.<queue>" });
export type DeadLetter = typeof DeadLetter.Type;

export const Lease = Schema.Struct({
  segment: Schema.String,
  bytes: NonNegativeInt,
  holders: NonNegativeInt.annotate({ description: "consumers that have not released the segment yet" }),
}).annotate({ identifier: "Lease", description: "value of key <segment> in KV bucket moeq_<runId>_leases (msgpack)" });
export type Lease = typeof Lease.Type;
