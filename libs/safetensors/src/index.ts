export { SafetensorsError } from "./errors.ts";
export { headerLength, MAX_HEADER_BYTES, type ParsedHeader, parseHeader, parseSafetensorsBytes } from "./header.ts";
export { type Layout, type LayoutInput, layoutSafetensors } from "./layout.ts";
export {
  type Checkpoint,
  INDEX_FILE,
  openCheckpoint,
  openSafetensors,
  SINGLE_FILE,
  type TensorEntry,
} from "./reader.ts";
export {
  type CheckpointWriter,
  type CheckpointWriterOptions,
  createCheckpointWriter,
  DEFAULT_MAX_SHARD_BYTES,
  type PlannedTensor,
  planShards,
  serializeSafetensors,
  writeSafetensorsFile,
} from "./writer.ts";
