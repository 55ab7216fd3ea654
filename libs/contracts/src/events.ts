import { Schema } from "effect";
import { NonNegativeInt, RunId, Sha256Hex, StageName, Traceparent } from "./ids.ts";
import { Graph } from "./manifest.ts";
import { TensorDescriptor } from "./tensor.ts";

const Open = Schema.Record(Schema.String, Schema.Unknown);
const Layer = NonNegativeInt;
const Expert = NonNegativeInt.annotate({ description: "expert index within the layer" });
const Proj = Schema.String.annotate({ description: "projection role, e.g. gate_proj, up_proj, down_proj" });
const DescriptorMap = Schema.Record(Schema.String, TensorDescriptor);

export const ErrorInfo = Schema.Struct({
  tag: Schema.String,
  message: Schema.String,
  stack: Schema.optionalKey(Schema.String),
}).annotate({ identifier: "ErrorInfo" });

export const ExpertCoverage = Schema.Struct({
  expert: Expert,
  tokensRouted: NonNegativeInt.annotate({ description: "tokens the model's router sends to the expert" }),
  tokensUsed: NonNegativeInt.annotate({ description: "tokens the calibration policy feeds into its statistics" }),
  weightMass: Schema.Finite,
  ess: Schema.Finite.annotate({ description: "effective sample size (sum w)^2 / sum w^2" }),
  calibration: Schema.Literals(["routed", "blended", "fallback"]).annotate({
    description:
      "what calibrated the expert: exactly its routed tokens, its routed tokens and others the policy added, or none (RTN)",
  }),
}).annotate({ identifier: "ExpertCoverage" });

/** Payload schema of every event type; the envelope's `type` selects one. */
export const eventPayloads = {
  RunStarted: Schema.Struct({ modelDir: Schema.String, options: Open, graph: Graph }),
  StageStarted: Schema.Struct({
    stage: StageName,
    instance: Schema.String,
    host: Schema.String,
    pid: NonNegativeInt,
    version: Schema.optionalKey(Schema.String),
  }),
  StageFailed: Schema.Struct({ stage: StageName, instance: Schema.String, error: ErrorInfo }),
  ModelOpened: Schema.Struct({
    arch: Schema.String,
    layers: NonNegativeInt,
    expertsPerLayer: Schema.Array(NonNegativeInt).annotate({ description: "routed experts of each layer (0: dense)" }),
    topK: NonNegativeInt,
    hiddenSize: NonNegativeInt,
    dtype: Schema.String,
    config: Open,
  }),
  LayerLoaded: Schema.Struct({ layer: Layer, tensors: DescriptorMap }),
  RoutingPlanned: Schema.Struct({
    layer: Layer,
    policy: Schema.String,
    tokens: NonNegativeInt,
    coverage: Schema.Array(ExpertCoverage),
  }),
  ExpertCalibrated: Schema.Struct({
    layer: Layer,
    expert: Expert,
    proj: Proj,
    hessian: TensorDescriptor,
    tokens: NonNegativeInt,
    weightMass: Schema.Finite,
    inputAbsmax: Schema.Finite,
    extra: Schema.optionalKey(DescriptorMap),
  }),
  ExpertQuantized: Schema.Struct({
    layer: Layer,
    expert: Expert,
    proj: Proj,
    outputs: DescriptorMap.annotate({ description: "e.g. qweight, scales, zeros, g_idx" }),
    loss: Schema.Finite,
    algorithm: Schema.String,
    seconds: Schema.Finite,
  }),
  LayerCompleted: Schema.Struct({ layer: Layer, experts: NonNegativeInt, seconds: Schema.Finite }),
  LayerPacked: Schema.Struct({
    layer: Layer,
    parts: Schema.Array(Schema.String).annotate({
      description: "the layer's checkpoint part files in the work dir (layer 0's include the model-level tensors)",
    }),
    bytes: NonNegativeInt,
  }).annotate({
    description: "the packer has durably written the layer's part of the output: its work-dir artifacts may go",
  }),
  ShardWritten: Schema.Struct({
    file: Schema.String,
    bytes: NonNegativeInt,
    sha256: Sha256Hex,
  }),
  CheckpointPacked: Schema.Struct({ dir: Schema.String, format: Schema.String, shards: NonNegativeInt }),
  EvaluationCompleted: Schema.Struct({ stats: Open }),
  RunCompleted: Schema.Struct({ seconds: Schema.Finite, summary: Schema.optionalKey(Open) }),
  RunFailed: Schema.Struct({ stage: StageName, error: ErrorInfo }),
  RunResumed: Schema.Struct({
    attempt: NonNegativeInt.annotate({
      description: "how many times the run has been resumed after a failure, this one included",
    }),
    after: ErrorInfo,
  }).annotate({
    description:
      "`moeq resume` continues a run that failed on a condition that can pass (a stage that kept dying): the failure is over, the work done stands",
  }),
} as const;

export type EventType = keyof typeof eventPayloads;
export const eventTypes = Object.keys(eventPayloads) as EventType[];
export type EventPayload<T extends EventType> = (typeof eventPayloads)[T]["Type"];

const envelopeFields = {
  runId: RunId,
  seq: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)).annotate({
    description: "the event's sequence in the run's stream (1-based, gap-free)",
  }),
  stage: Schema.String.annotate({ description: "stage that appended the event (supervisor: 'run')" }),
  time: Schema.String.annotate({ description: "ISO 8601 UTC timestamp" }),
  traceparent: Schema.optionalKey(Traceparent),
};

function envelopeOf<T extends EventType>(type: T) {
  return Schema.Struct({ ...envelopeFields, type: Schema.Literal(type), payload: eventPayloads[type] }).annotate({
    identifier: `${type}Event`,
  });
}

export const RunStartedEvent = envelopeOf("RunStarted");
export const StageStartedEvent = envelopeOf("StageStarted");
export const StageFailedEvent = envelopeOf("StageFailed");
export const ModelOpenedEvent = envelopeOf("ModelOpened");
export const LayerLoadedEvent = envelopeOf("LayerLoaded");
export const RoutingPlannedEvent = envelopeOf("RoutingPlanned");
export const ExpertCalibratedEvent = envelopeOf("ExpertCalibrated");
export const ExpertQuantizedEvent = envelopeOf("ExpertQuantized");
export const LayerCompletedEvent = envelopeOf("LayerCompleted");
export const LayerPackedEvent = envelopeOf("LayerPacked");
export const ShardWrittenEvent = envelopeOf("ShardWritten");
export const CheckpointPackedEvent = envelopeOf("CheckpointPacked");
export const EvaluationCompletedEvent = envelopeOf("EvaluationCompleted");
export const RunCompletedEvent = envelopeOf("RunCompleted");
export const RunFailedEvent = envelopeOf("RunFailed");
export const RunResumedEvent = envelopeOf("RunResumed");

/** Every event on the bus: an envelope whose `type` selects the payload schema. */
export const Event = Schema.Union([
  RunStartedEvent,
  StageStartedEvent,
  StageFailedEvent,
  ModelOpenedEvent,
  LayerLoadedEvent,
  RoutingPlannedEvent,
  ExpertCalibratedEvent,
  ExpertQuantizedEvent,
  LayerCompletedEvent,
  LayerPackedEvent,
  ShardWrittenEvent,
  CheckpointPackedEvent,
  EvaluationCompletedEvent,
  RunCompletedEvent,
  RunFailedEvent,
  RunResumedEvent,
]).annotate({ identifier: "Event" });
export type Event = typeof Event.Type;
export type EventOf<T extends EventType> = Extract<Event, { type: T }>;

/** What a writer supplies; the log fills in runId, seq and time. */
export type NewEvent = { [T in EventType]: { type: T; payload: EventPayload<T> } }[EventType];
