// @moeq/models: the architecture registry (one file per architecture in ./archs) and the f32
// forward engine over WeightSources.
export type { Architecture } from "./arch.ts";
export {
  causalConv1dSilu,
  type DeltaRuleInputs,
  gatedDeltaRuleChunked,
  gatedDeltaRuleRecurrent,
} from "./blocks/deltanet.ts";
export { indexerScores, selectKeys, sparseAttention } from "./blocks/dsa-indexer.ts";
export { type ExpertOutput, expertForward } from "./blocks/experts.ts";
export { dequantizeFp8Block, type Fp8BlockOptions, fp8BlockSize, fp8BlockSource } from "./blocks/fp8-source.ts";
export {
  extractRoleMatrix,
  insertRoleMatrix,
  type PackTarget,
  packTarget,
  refuseModules,
} from "./blocks/fused-tensors.ts";
export type { LinearCall, LinearHook } from "./blocks/linear-hook.ts";
export { dispatch } from "./blocks/moe.ts";
export { dequantizeMxfp4Transposed, mxfp4ExpertSource } from "./blocks/mxfp4-source.ts";
export { inverseFrequencies, type RopeScaling, type RopeSpec, type RopeTables, ropeTables } from "./blocks/rope.ts";
export { type Routing, route } from "./blocks/routing.ts";
export { ConfigReader, type RawConfig } from "./config.ts";
export {
  DeviceEngine,
  type DeviceEngineOptions,
  type DeviceLinearHook,
  type DeviceMatrix,
  type DeviceRouting,
  deviceUnsupported,
} from "./device-engine.ts";
export {
  type AttentionResult,
  Engine,
  type EngineOptions,
  type ForwardOptions,
  type ForwardResult,
  linearSites,
  type SequenceBatch,
} from "./engine.ts";
export {
  DeviceUnsupportedError,
  ModelConfigError,
  type ModelError,
  ModelInputError,
  ModelWeightError,
  UnknownArchitectureError,
} from "./errors.ts";
export { type ModelSummary, summarize } from "./inspect.ts";
export { type LoadedModel, loadModel, readConfig } from "./model.ts";
export { architectureNote, architectures, buildSpec, detectArchitecture, supportedModelTypes } from "./registry.ts";
export type * from "./spec.ts";
export {
  defaultQuantizable,
  expectedTensors,
  isQuantizable,
  quantizableWeights,
  unusedTensors,
  validateWeights,
  weightRoles,
} from "./tensors.ts";
export {
  F32Weights,
  mapSource,
  overlaySource,
  STORED_CODES,
  type StoredCodes,
  storedCodes,
  storeSource,
  type TensorStore,
  tensorToF32,
  type WeightSource,
} from "./weights.ts";
