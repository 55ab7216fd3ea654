// Opening a model directory: config.json → architecture + spec, the checkpoint as a WeightSource,
// validated against the tensors the spec expects.
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Checkpoint, openCheckpoint } from "@moeq/safetensors";
import type { Architecture } from "./arch.ts";
import { fp8BlockSize, fp8BlockSource } from "./blocks/fp8-source.ts";
import type { RawConfig } from "./config.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { ModelConfigError } from "./errors.ts";
import { buildSpec } from "./registry.ts";
import type { ModelSpec } from "./spec.ts";
import { validateWeights } from "./tensors.ts";
import { storeSource, type WeightSource } from "./weights.ts";

export interface LoadedModel {
  readonly dir: string;
  readonly config: RawConfig;
  readonly arch: Architecture;
  readonly spec: ModelSpec;
  readonly checkpoint: Checkpoint;
  readonly source: WeightSource;
  engine(opts?: EngineOptions): Engine;
  close(): void;
}

const CONFIG_MAX_BYTES = 16 * 1024 * 1024;

export function readConfig(dir: string): RawConfig {
  const file = join(dir, "config.json");
  let text: string;
  try {
    // a config is kilobytes; a symlink to a device or a huge file is refused before it is read
    const st = statSync(file);
    if (!st.isFile()) throw new Error("not a regular file");
    if (st.size > CONFIG_MAX_BYTES) throw new Error(`${st.size} bytes; a config.json is at most ${CONFIG_MAX_BYTES}`);
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ModelConfigError({ field: "config.json", message: `${file}: cannot read: ${(e as Error).message}` });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text: a config.json linked to another file must not leak it
    throw new ModelConfigError({
      field: "config.json",
      message: `${file}: not valid JSON (${text.length} characters; content not shown)`,
    });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ModelConfigError({ field: "config.json", message: `${file}: expected a JSON object` });
  // Multimodal wrappers keep the language model's config under text_config.
  const r = raw as Record<string, unknown>;
  return r;
}

/** Opens and validates a model directory (config.json + safetensors). Throws typed errors. */
export function loadModel(
  dir: string,
  opts: {
    validate?: boolean;
    /** How FP8 block-quantized weights are presented: BF16 (transformers' dequantize=True rounding,
     *  the default) or F32 (exact f32(code)·scale, what moeq's evaluator scores). */
    fp8Weights?: "BF16" | "F32";
  } = {},
): LoadedModel {
  const config = readConfig(dir);
  const { arch, spec } = buildSpec(config, join(dir, "config.json"));
  const checkpoint = openCheckpoint(dir);
  // FP8 block-quantized inputs (quant_method "fp8") read as bf16 (or f32), one tensor at a time.
  const block = fp8BlockSize(config);
  const raw = storeSource(checkpoint, dir);
  const stored = block ? fp8BlockSource(raw, { block, label: dir, dtype: opts.fp8Weights ?? "BF16" }) : raw;
  const source = arch.adaptSource ? arch.adaptSource(stored) : stored;
  try {
    if (opts.validate ?? true) validateWeights(spec, source, dir);
  } catch (e) {
    checkpoint.close();
    throw e;
  }
  return {
    dir,
    config,
    arch,
    spec,
    checkpoint,
    source,
    engine: (o) => new Engine(spec, source, o),
    close: () => checkpoint.close(),
  };
}
