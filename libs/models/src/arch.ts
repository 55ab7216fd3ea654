// What one architecture file provides. The registry maps model_type → Architecture.
import type { ConfigReader } from "./config.ts";
import type { ModelSpec, WeightRole } from "./spec.ts";
import type { WeightSource } from "./weights.ts";

export interface Architecture {
  /** transformers' model_type */
  readonly modelType: string;
  /** transformers' architectures[0] values that mean this model */
  readonly hfArchitectures: readonly string[];
  /** easy / mid / hard, see docs/architectures.md */
  readonly difficulty: "easy" | "mid" | "hard";
  /** Parses config.json (with transformers' defaults) into the resolved model description. */
  build(cfg: ConfigReader): ModelSpec;
  /** Overrides the default quantization predicate (see quantizable.ts). */
  quantizable?(role: WeightRole): boolean;
  /**
   * Presents an original on-disk layout the spec does not name (GPT-OSS MXFP4 `*_blocks` /
   * `*_scales`) under the spec's tensor names. Applied by loadModel before validation.
   */
  adaptSource?(source: WeightSource): WeightSource;
}
