// Formats on disk: write a format's output through the streaming safetensors writer (temp dir,
// then rename), and open any quantized checkpoint for the evaluator.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Checkpoint, createCheckpointWriter, openCheckpoint } from "@moeq/safetensors";
import type { Tensor } from "@moeq/tensor";
import { type DetectedFormat, detectFormat, readerFor } from "./detect.ts";
import { FormatError } from "./errors.ts";
import type { QuantizedReader } from "./reader-types.ts";
import { getFormat } from "./registry.ts";
import type { DequantizedModule, FormatInput, InputQuantization } from "./types.ts";

/** Files copied unchanged from the source model when present. */
export const COPIED_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "chat_template.jinja",
  "chat_template.json",
];

export interface WriteCheckpointOptions {
  /** The source model directory: tokenizer and generation config are copied from it. */
  readonly sourceDir?: string;
  readonly maxShardBytes?: number;
}

export interface WrittenCheckpoint {
  readonly dir: string;
  readonly format: string;
  readonly shards: readonly string[];
  readonly ignore: readonly string[];
  readonly notes: readonly string[];
  readonly copied: readonly string[];
}

export const writeQuantizedCheckpoint = (
  outDir: string,
  formatName: string,
  input: FormatInput,
  opts: WriteCheckpointOptions = {},
): WrittenCheckpoint => {
  const format = getFormat(formatName);
  const out = format.write(input);
  const plan = [...out.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
  const writer = createCheckpointWriter(outDir, plan, { maxShardBytes: opts.maxShardBytes });
  const extra: Record<string, string | Uint8Array> = {
    "config.json": `${JSON.stringify(out.config, null, 2)}\n`,
  };
  for (const [file, text] of out.extraFiles) extra[file] = text;
  const copied: string[] = [];
  try {
    for (const [name, t] of out.tensors) writer.write(name, t.data);
    if (opts.sourceDir) {
      for (const f of COPIED_FILES) {
        const p = join(opts.sourceDir, f);
        if (existsSync(p) && !(f in extra)) {
          extra[f] = readFileSync(p);
          copied.push(f);
        }
      }
    }
  } catch (e) {
    writer.abort();
    throw e;
  }
  writer.finish(extra);
  const notes = [...out.notes];
  for (const m of input.modules) {
    if (m.inputRange?.source === "fallback")
      notes.push(`input scale of ${m.name} is a fallback: ${m.inputRange.reason ?? "no reason given"}`);
  }
  return { dir: outDir, format: format.name, shards: writer.shards, ignore: out.ignore, notes, copied };
};

export interface QuantizedCheckpoint {
  readonly dir: string;
  readonly format: DetectedFormat;
  readonly config: Readonly<Record<string, unknown>>;
  /** Modules stored quantized, by original module name (GPT-OSS: per expert). */
  readonly quantizedModules: readonly string[];
  dequantize(module: string): DequantizedModule;
  /** How a quantized module's input is quantized when served; null when weight-only. */
  inputQuantization(module: string): InputQuantization | null;
  /** Tensors stored as they are (norms, embeddings, router, ignored modules, biases). */
  readonly passthroughNames: readonly string[];
  tensor(name: string): Tensor;
  close(): void;
}

const readJson = (path: string): Record<string, unknown> | undefined => {
  if (!existsSync(path)) return undefined;
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FormatError({ format: "checkpoint", reason: `${path}: ${(e as Error).message}` });
  }
};

export const openQuantizedCheckpoint = (dir: string, ckpt: Checkpoint): QuantizedCheckpoint => {
  const config = readJson(join(dir, "config.json"));
  if (!config) throw new FormatError({ format: "checkpoint", reason: `${join(dir, "config.json")} is missing` });
  const hfQuantConfig = readJson(join(dir, "hf_quant_config.json"));
  const quantizeConfig = readJson(join(dir, "quantize_config.json"));
  const format = detectFormat(config, { hfQuantConfig, quantizeConfig });
  const reader: QuantizedReader = readerFor(format, {
    source: ckpt,
    quantizationConfig: (config.quantization_config ?? {}) as Record<string, unknown>,
    sideConfig: format === "modelopt" ? hfQuantConfig : quantizeConfig,
  });
  return {
    dir,
    format,
    config,
    quantizedModules: reader.modules,
    dequantize: (m) => reader.dequantize(m),
    inputQuantization: (m) => reader.inputQuantization?.(m) ?? null,
    passthroughNames: ckpt.names().filter((n) => !reader.owns(n)),
    tensor: (n) => ckpt.tensor(n),
    close: () => ckpt.close(),
  };
};

/** Open a checkpoint directory written by moeq or by another tool, detecting its format. */
export const readQuantizedCheckpoint = (dir: string): QuantizedCheckpoint => {
  const ckpt = openCheckpoint(dir);
  try {
    return openQuantizedCheckpoint(dir, ckpt);
  } catch (e) {
    ckpt.close();
    throw e;
  }
};
