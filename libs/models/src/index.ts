// @moeq/models: the architecture registry (one file per architecture in ./archs) and the f32
// forward engine over WeightSources.
export type { Architecture } from "./arch.ts";
export { ConfigReader, type RawConfig } from "./config.ts";
export { type ExpertOutput, expertForward } from "./blocks/experts.ts";
export { dispatch } from "./blocks/moe.ts";
export { type Routing, route } from "./blocks/routing.ts";
export { inverseFrequencies, type RopeScaling, type RopeSpec, type RopeTables, ropeTables } from "./blocks/rope.ts";
export {
  type AttentionResult,
  Engine,
  type EngineOptions,
  type ForwardOptions,
  type ForwardResult,
  type SequenceBatch,
} from "./engine.ts";
export {
  type ModelError,
  ModelConfigError,
  ModelInputError,
  ModelWeightError,
  UnknownArchitectureError,
} from "./errors.ts";
export { type ModelSummary, summarize } from "./inspect.ts";
export { type LoadedModel, loadModel, readConfig } from "./model.ts";
export { architectures, buildSpec, detectArchitecture, supportedModelTypes } from "./registry.ts";
export type * from "./spec.ts";
export {
  defaultQuantizable,
  expectedTensors,
  isQuantizable,
  quantizableWeights,
  validateWeights,
  weightRoles,
} from "./tensors.ts";
export { F32Weights, mapSource, overlaySource, storeSource, type TensorStore, tensorToF32, type WeightSource } from "./weights.ts";
