// Formats on disk: a checkpoint is written in parts — one per decoder layer plus the model-level
// tensors — each formatted on its own (so memory holds one layer's packed tensors), then the
// parts' tensors are copied in order through the streaming safetensors writer (temp dir, then
// rename). The packer keeps parts as files in the work dir as layers finish; a model held in
// memory takes the same path, so both give the same bytes. Also: open any quantized checkpoint.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  type Checkpoint,
  createCheckpointWriter,
  openCheckpoint,
  openSafetensors,
  type PlannedTensor,
  writeSafetensorsFile,
} from "@moeq/safetensors";
import type { Tensor } from "@moeq/tensor";
import { type DetectedFormat, detectFormat, readerFor } from "./detect.ts";
import { FormatError } from "./errors.ts";
import { deriveUnquantizedModules } from "./module-names.ts";
import type { QuantizedReader } from "./reader-types.ts";
import { getFormat } from "./registry.ts";
import type { DequantizedModule, FormatInput, FormatPartOutput, InputQuantization } from "./types.ts";

/**
 * Weights in any format (the output's own are written as safetensors), the checkpoint index and
 * the config (both written anew) and the model card (written by the run): not copied.
 */
const NOT_COPIED =
  /(\.(safetensors|bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|pkl|npz|npy|tflite|ot)|^model\.safetensors\.index\.json|^config\.json|^README\.md)$/i;

/**
 * The source model's other files, copied unchanged so the output loads wherever the input did:
 * tokenizer, generation config, chat template, and the remote code that `auto_map` in the config
 * points at (copied as data, never run). Top-level regular files only (links are followed: a
 * Hugging Face cache snapshot is made of them); hidden files are skipped.
 */
export function nonWeightFiles(sourceDir: string): string[] {
  return readdirSync(sourceDir)
    .filter((f) => !f.startsWith(".") && !NOT_COPIED.test(f))
    .filter((f) => {
      try {
        return statSync(join(sourceDir, f)).isFile();
      } catch {
        return false; // a dangling link
      }
    })
    .sort();
}

export interface WriteCheckpointOptions {
  /** The source model directory: its non-weight files are copied from it (nonWeightFiles). */
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

/** The checkpoint part a tensor belongs to: its decoder layer (`…layers.<n>.`, `blocks.<n>.`,
 * `h.<n>.`), or −1 for the model-level tensors (embeddings, final norm, lm_head). */
export const checkpointPartOf = (tensor: string): number => {
  const m = /(?:^|\.)(?:layers|blocks|h)\.(\d+)\./.exec(tensor);
  return m ? Number(m[1]) : -1;
};

/** What a written part records besides its tensors: enough to plan and configure the whole. */
export interface PartRecord extends FormatPartOutput {
  /** the part's tensors in the format's write order (the whole checkpoint's plan is their concatenation) */
  readonly tensors: readonly PlannedTensor[];
  readonly notes: readonly string[];
}

/** Where a part's tensor bytes are: in memory, or at an offset of a file. */
type PartBytes = { readonly data: Uint8Array } | { readonly file: string; readonly offset: number };

export interface WrittenPart {
  readonly record: PartRecord;
  bytes(name: string): PartBytes;
}

const PART_METADATA_KEY = "moeq.part";

/**
 * Runs the format's writer over one part (a layer's quantized modules and its other tensors).
 * `unquantizedModules` must be the whole model's, so every part's config agrees on them. A part
 * without quantized modules is its passthrough tensors unchanged (every format copies those).
 */
export function formatPart(
  formatName: string,
  input: FormatInput,
): { record: PartRecord; tensors: Map<string, Tensor> } {
  const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  if (input.modules.length === 0) {
    const tensors = new Map(input.passthrough);
    const plan = [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
    return { record: { tensors: plan, config: {}, extraFiles: new Map(), ignore, modules: [], notes: [] }, tensors };
  }
  const out = getFormat(formatName).write({ ...input, unquantizedModules: ignore });
  const notes = [...out.notes];
  for (const m of input.modules)
    if (m.inputRange?.source === "fallback")
      notes.push(`input scale of ${m.name} is a fallback: ${m.inputRange.reason ?? "no reason given"}`);
  const plan = [...out.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
  return {
    record: {
      tensors: plan,
      config: out.config,
      extraFiles: out.extraFiles,
      ignore: out.ignore,
      modules: input.modules.map((m) => m.name),
      notes,
    },
    tensors: out.tensors,
  };
}

/** Writes one part as a safetensors file (atomically) whose metadata holds its record. */
export function writeCheckpointPart(path: string, formatName: string, input: FormatInput): PartRecord {
  const { record, tensors } = formatPart(formatName, input);
  const json = JSON.stringify({ ...record, extraFiles: [...record.extraFiles] });
  writeSafetensorsFile(path, [...tensors], { [PART_METADATA_KEY]: json });
  return record;
}

/** Opens a part file written by writeCheckpointPart (headers only; bytes are copied from the file later). */
export function readCheckpointPart(path: string): WrittenPart {
  const st = openSafetensors(path);
  try {
    const json = st.fileMetadata(path)?.[PART_METADATA_KEY];
    if (json === undefined)
      throw new FormatError({
        format: "checkpoint",
        reason: `${path}: not a checkpoint part (no ${PART_METADATA_KEY} metadata)`,
      });
    const raw = JSON.parse(json) as Omit<PartRecord, "extraFiles"> & { extraFiles: [string, string][] };
    const record: PartRecord = { ...raw, extraFiles: new Map(raw.extraFiles) };
    const where = new Map<string, PartBytes>();
    for (const t of record.tensors) {
      const e = st.entry(t.name);
      where.set(t.name, { file: e.file, offset: e.dataOffset });
    }
    return { record, bytes: (n) => where.get(n)! };
  } finally {
    st.close();
  }
}

/** The whole model's config and extra files from its parts (those with quantized modules). */
function mergedConfig(formatName: string, records: readonly PartRecord[], input: Pick<FormatInput, "modelConfig">) {
  const format = getFormat(formatName);
  const withModules = records.filter((r) => r.modules.length > 0);
  if (withModules.length === 0) {
    // nothing quantized: the format's own answer for an empty model (a config, or its error)
    const out = format.write({
      modules: [],
      passthrough: new Map(),
      unquantizedModules: records[0]?.ignore ?? [],
      modelConfig: input.modelConfig,
    });
    return { config: out.config, extraFiles: out.extraFiles, ignore: out.ignore };
  }
  const ignore = withModules[0]!.ignore;
  if (format.mergeParts) return { ...format.mergeParts(withModules), ignore };
  const same = (r: PartRecord) => JSON.stringify([r.config, [...r.extraFiles]]);
  const want = same(withModules[0]!);
  const odd = withModules.find((r) => same(r) !== want);
  if (odd)
    throw new FormatError({
      format: format.name,
      reason: `the config of the part with ${odd.modules[0]} differs from that of ${withModules[0]!.modules[0]}; ${format.name} has one config per model`,
    });
  return { config: withModules[0]!.config, extraFiles: withModules[0]!.extraFiles, ignore };
}

/**
 * Publishes the checkpoint from its parts, in part order: the plan (and so the shard split) is
 * the parts' tensors concatenated, each tensor copied into its shard in bounded chunks, then the
 * directory renamed into place. Memory holds headers and one chunk, whatever the model's size.
 */
export function assembleCheckpoint(
  outDir: string,
  formatName: string,
  parts: readonly WrittenPart[],
  input: Pick<FormatInput, "modelConfig">,
  opts: WriteCheckpointOptions = {},
): WrittenCheckpoint {
  const records = parts.map((p) => p.record);
  const { config, extraFiles, ignore } = mergedConfig(formatName, records, input);
  const plan = records.flatMap((r) => r.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] })));
  const writer = createCheckpointWriter(outDir, plan, { maxShardBytes: opts.maxShardBytes });
  const extra: Record<string, string | Uint8Array> = { "config.json": `${JSON.stringify(config, null, 2)}\n` };
  for (const [file, text] of extraFiles) extra[file] = text;
  const copied: string[] = [];
  try {
    for (const p of parts)
      for (const t of p.record.tensors) {
        const b = p.bytes(t.name);
        if ("data" in b) writer.write(t.name, b.data);
        else writer.copyFrom(t.name, b.file, b.offset);
      }
    if (opts.sourceDir) {
      for (const f of nonWeightFiles(opts.sourceDir)) {
        if (f in extra) continue;
        extra[f] = readFileSync(join(opts.sourceDir, f));
        copied.push(f);
      }
    }
  } catch (e) {
    writer.abort();
    throw e;
  }
  writer.finish(extra);
  return {
    dir: outDir,
    format: getFormat(formatName).name,
    shards: writer.shards,
    ignore,
    notes: records.flatMap((r) => r.notes),
    copied,
  };
}

/** Splits a whole model's input into its parts (checkpointPartOf), in part order. */
export function checkpointParts(input: FormatInput): FormatInput[] {
  const ignore = [...(input.unquantizedModules ?? deriveUnquantizedModules(input.passthrough))];
  const keys = new Set<number>();
  for (const n of input.passthrough.keys()) keys.add(checkpointPartOf(n));
  for (const m of input.modules) keys.add(checkpointPartOf(`${m.name}.weight`));
  return [...keys]
    .sort((a, b) => a - b)
    .map((k) => ({
      modules: input.modules.filter((m) => checkpointPartOf(`${m.name}.weight`) === k),
      passthrough: new Map([...input.passthrough].filter(([n]) => checkpointPartOf(n) === k)),
      unquantizedModules: ignore,
      modelConfig: input.modelConfig,
    }));
}

/**
 * A whole model held in memory, written through the same parts as the packer's layer-by-layer
 * path (so the two give the same bytes): each part formatted, then the parts assembled.
 */
export const writeQuantizedCheckpoint = (
  outDir: string,
  formatName: string,
  input: FormatInput,
  opts: WriteCheckpointOptions = {},
): WrittenCheckpoint => {
  const parts: WrittenPart[] = checkpointParts(input).map((part) => {
    const { record, tensors } = formatPart(formatName, part);
    return { record, bytes: (n) => ({ data: tensors.get(n)!.data }) };
  });
  return assembleCheckpoint(outDir, formatName, parts, input, opts);
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
