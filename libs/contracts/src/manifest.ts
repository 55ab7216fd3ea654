import { Schema } from "effect";
import { NonNegativeInt, StageName } from "./ids.ts";

export const StageManifest = Schema.Struct({
  name: StageName,
  version: Schema.String,
  description: Schema.optionalKey(Schema.String),
  command: Schema.Array(Schema.String).annotate({ description: "argv; the supervisor appends --nats and --run" }),
  language: Schema.optionalKey(Schema.String),
  consumes: Schema.Array(Schema.String).annotate({ description: "event types this stage reacts to" }),
  produces: Schema.Array(Schema.String).annotate({ description: "event types this stage appends" }),
  queues: Schema.Struct({
    pulls: Schema.Array(Schema.String).annotate({ description: "work queues it consumes" }),
    pushes: Schema.Array(Schema.String).annotate({ description: "work queues it publishes to" }),
  }),
  options: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
}).annotate({ identifier: "StageManifest", description: "what a stage process is and what it speaks on the bus" });
export type StageManifest = typeof StageManifest.Type;

export const GraphStage = Schema.Struct({
  name: StageName,
  manifest: Schema.optionalKey(Schema.String).annotate({ description: "path of the stage's manifest file" }),
  replicas: Schema.optionalKey(NonNegativeInt),
  after: Schema.optionalKey(Schema.Array(StageName)),
  options: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
}).annotate({ identifier: "GraphStage" });

export const Graph = Schema.Struct({
  version: Schema.Literal(1),
  stages: Schema.Array(GraphStage),
}).annotate({ identifier: "Graph", description: "the stages of a run and their order" });
export type Graph = typeof Graph.Type;
