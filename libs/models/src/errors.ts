// Typed failures of the model layer; every message names the file, tensor or config field at fault.
import { Data } from "effect";

/** config.json names a model_type / architecture this registry does not implement. */
export class UnknownArchitectureError extends Data.TaggedError("UnknownArchitectureError")<{
  readonly modelType: string;
  readonly supported: readonly string[];
  readonly message: string;
}> {}

/** A config.json field is missing, of the wrong type or out of range. */
export class ModelConfigError extends Data.TaggedError("ModelConfigError")<{
  readonly field: string;
  readonly message: string;
}> {}

/** A checkpoint tensor is missing or has the wrong dtype/shape for the configured architecture. */
export class ModelWeightError extends Data.TaggedError("ModelWeightError")<{
  readonly tensor: string;
  readonly message: string;
}> {}

/** Inputs to the engine are malformed (token id out of range, wrong buffer length...). */
export class ModelInputError extends Data.TaggedError("ModelInputError")<{
  readonly message: string;
}> {}

/** The device engine does not implement a block this model uses (named in the message); nothing ran. */
export class DeviceUnsupportedError extends Data.TaggedError("DeviceUnsupportedError")<{
  readonly modelType: string;
  readonly message: string;
}> {
  /** no restart of a stage fixes it (libs/runtime's isPermanentError) */
  readonly permanent = true;
}

export type ModelError =
  | UnknownArchitectureError
  | ModelConfigError
  | ModelWeightError
  | ModelInputError
  | DeviceUnsupportedError;
