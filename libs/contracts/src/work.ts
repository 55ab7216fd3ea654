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
