// Write side. serializeSafetensors builds a small file in memory; the checkpoint writer streams a
// large one: the plan fixes every shard's header up front, each write() lands at its final
// offset with a positional write (any order, nothing buffered), and finish() publishes the
// directory with a single rename, so a crash never leaves a half-written checkpoint in place.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import type { DType, Tensor } from "@moeq/tensor";
import { SafetensorsError } from "./errors.ts";
import { type Layout, layoutSafetensors, tensorByteLength } from "./layout.ts";
import { INDEX_FILE, SINGLE_FILE } from "./reader.ts";

export function serializeSafetensors(tensors: Array<[string, Tensor]>, metadata?: Record<string, string>): Uint8Array {
  const file = "<memory>";
  const inputs = tensors.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const layout = layoutSafetensors(inputs, metadata, file);
  const byName = new Map(tensors);
  const out = new Uint8Array(layout.header.length + layout.dataLength);
  out.set(layout.header, 0);
  for (const t of layout.tensors) {
    const data = (byName.get(t.name) as Tensor).data;
    if (data.length !== t.end - t.begin)
      throw new SafetensorsError({
        file,
        tensor: t.name,
        reason: `has ${data.length} bytes, ${t.dtype} [${t.shape}] needs ${t.end - t.begin}`,
      });
    out.set(data, layout.header.length + t.begin);
  }
  return out;
}

export interface PlannedTensor {
  name: string;
  dtype: DType;
  shape: number[];
}

export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000; // huggingface_hub's MAX_SHARD_SIZE ("5GB")

/** Tensor → shard assignment of huggingface_hub's split_state_dict_into_shards_factory: walk in
 * plan order; a tensor larger than the limit gets a shard of its own, appended at once; a tensor
 * that would push the open shard past the limit closes it first. Returns shard file names and,
 * per shard, its tensors in plan order. */
export function planShards(
  plan: readonly PlannedTensor[],
  maxShardBytes: number,
): Array<{ file: string; tensors: PlannedTensor[] }> {
  const shards: PlannedTensor[][] = [];
  let current: PlannedTensor[] = [];
  let size = 0;
  for (const t of plan) {
    const n = tensorByteLength(t);
    if (n > maxShardBytes) {
      shards.push([t]);
      continue;
    }
    if (size + n > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += n;
  }
  if (current.length > 0) shards.push(current);
  if (shards.length <= 1) return [{ file: SINGLE_FILE, tensors: shards[0] ?? [] }];
  const k = String(shards.length).padStart(5, "0");
  return shards.map((tensors, i) => ({ file: `model-${String(i + 1).padStart(5, "0")}-of-${k}.safetensors`, tensors }));
}

// Python's json.dumps(obj, indent=2, sort_keys=True) (what transformers writes the index with):
// ensure_ascii escapes, keys sorted by code point.
function pyJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20 || c > 0x7e) {
      if (c > 0xffff) {
        const v = c - 0x10000;
        out += `\\u${(0xd800 + (v >> 10)).toString(16)}\\u${(0xdc00 + (v & 0x3ff)).toString(16)}`;
      } else if (c === 0x7f) out += ch;
      else out += `\\u${c.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return `${out}"`;
}
const byCodePoint = (a: string, b: string) => {
  const x = [...a].map((c) => c.codePointAt(0) as number);
  const y = [...b].map((c) => c.codePointAt(0) as number);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};
function pyIndexJson(
  totalSize: number,
  weightMap: Record<string, string>,
  extraMetadata: Record<string, string | number>,
): string {
  const meta: Record<string, string | number> = { ...extraMetadata, total_size: totalSize };
  const metaLines = Object.keys(meta)
    .sort(byCodePoint)
    .map((k) => {
      const v = meta[k];
      return `    ${pyJsonString(k)}: ${typeof v === "number" ? String(v) : pyJsonString(v)}`;
    });
  const mapLines = Object.keys(weightMap)
    .sort(byCodePoint)
    .map((k) => `    ${pyJsonString(k)}: ${pyJsonString(weightMap[k])}`);
  const block = (lines: string[]) => (lines.length === 0 ? "{}" : `{\n${lines.join(",\n")}\n  }`);
  return `{\n  "metadata": ${block(metaLines)},\n  "weight_map": ${block(mapLines)}\n}\n`;
}

export interface CheckpointWriterOptions {
  /** bytes of tensor data per shard (default 5 GB, as huggingface_hub) */
  maxShardBytes?: number;
  /** __metadata__ of every shard (default {"format":"pt"}, as save_pretrained writes) */
  metadata?: Record<string, string>;
  /** extra keys beside total_size in the index's "metadata" */
  indexMetadata?: Record<string, string | number>;
}

export interface CheckpointWriter {
  write(name: string, data: Uint8Array): void;
  /** Copies a planned tensor's bytes from `file` at `offset` in bounded chunks (no whole-tensor buffer). */
  copyFrom(name: string, file: string, offset: number): void;
  finish(extraFiles?: Record<string, string | Uint8Array>): void;
  abort(): void;
  readonly shards: string[];
}

interface OpenShard {
  readonly file: string;
  readonly layout: Layout;
  fd: number | undefined;
  pending: number;
}

const CHUNK = 1 << 30; // writeSync takes at most 2 GiB per call
const COPY_CHUNK = 16 * 1024 * 1024; // copyFrom's buffer: bounded memory whatever the tensor size

export function createCheckpointWriter(
  outDir: string,
  plan: PlannedTensor[],
  opts: CheckpointWriterOptions = {},
): CheckpointWriter {
  const maxShardBytes = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(maxShardBytes > 0))
    throw new SafetensorsError({ file: outDir, reason: `maxShardBytes must be positive, got ${maxShardBytes}` });
  const metadata = opts.metadata ?? { format: "pt" };
  const seen = new Set<string>();
  for (const t of plan) {
    if (seen.has(t.name))
      throw new SafetensorsError({ file: outDir, tensor: t.name, reason: "tensor named twice in the plan" });
    seen.add(t.name);
  }
  const split = planShards(plan, maxShardBytes);
  const tmp = join(dirname(outDir), `.${basename(outDir)}.tmp-${process.pid}-${Date.now().toString(36)}`);
  try {
    mkdirSync(tmp, { recursive: true });
  } catch (e) {
    throw new SafetensorsError({ file: outDir, reason: `cannot create ${tmp}: ${(e as Error).message}` });
  }
  const shards: OpenShard[] = [];
  const where = new Map<string, { shard: OpenShard; begin: number; length: number; written: boolean }>();
  let done = false;
  const cleanup = () => {
    for (const s of shards) if (s.fd !== undefined) closeSync(s.fd);
    for (const s of shards) s.fd = undefined;
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    for (const { file, tensors } of split) {
      const layout = layoutSafetensors(tensors, metadata, join(outDir, file));
      const fd = openSync(join(tmp, file), "w");
      const shard: OpenShard = { file, layout, fd, pending: tensors.length };
      shards.push(shard);
      writeAll(fd, layout.header, 0);
      for (const t of layout.tensors)
        where.set(t.name, { shard, begin: layout.header.length + t.begin, length: t.end - t.begin, written: false });
    }
  } catch (e) {
    cleanup();
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError({ file: outDir, reason: `cannot create the shards: ${(e as Error).message}` });
  }

  const ensureOpen = (what: string) => {
    if (done) throw new SafetensorsError({ file: outDir, reason: `${what} after finish() or abort()` });
  };
  return {
    shards: split.map((s) => s.file),
    copyFrom(name, src, offset) {
      ensureOpen("copyFrom");
      const w = where.get(name);
      if (!w) throw new SafetensorsError({ file: outDir, tensor: name, reason: "not in the plan" });
      const file = join(outDir, w.shard.file);
      if (w.written) throw new SafetensorsError({ file, tensor: name, reason: "written twice" });
      const buf = new Uint8Array(Math.min(COPY_CHUNK, w.length));
      let fd: number | undefined;
      try {
        fd = openSync(src, "r");
        for (let off = 0; off < w.length; ) {
          const n = readSync(fd, buf, 0, Math.min(buf.byteLength, w.length - off), offset + off);
          if (n === 0) throw new Error(`${src} ended ${w.length - off} bytes early`);
          writeAll(w.shard.fd as number, buf.subarray(0, n), w.begin + off);
          off += n;
        }
      } catch (e) {
        throw new SafetensorsError({ file, tensor: name, reason: `copy from ${src} failed: ${(e as Error).message}` });
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
      w.written = true;
      w.shard.pending--;
    },
    write(name, data) {
      ensureOpen("write");
      const w = where.get(name);
      if (!w) throw new SafetensorsError({ file: outDir, tensor: name, reason: "not in the plan" });
      const file = join(outDir, w.shard.file);
      if (w.written) throw new SafetensorsError({ file, tensor: name, reason: "written twice" });
      if (data.byteLength !== w.length)
        throw new SafetensorsError({
          file,
          tensor: name,
          reason: `got ${data.byteLength} bytes, the plan needs ${w.length}`,
        });
      try {
        writeAll(w.shard.fd as number, data, w.begin);
      } catch (e) {
        throw new SafetensorsError({ file, tensor: name, reason: `write failed: ${(e as Error).message}` });
      }
      w.written = true;
      w.shard.pending--;
    },
    finish(extraFiles = {}) {
      ensureOpen("finish");
      for (const [name, w] of where)
        if (!w.written)
          throw new SafetensorsError({ file: join(outDir, w.shard.file), tensor: name, reason: "never written" });
      done = true;
      try {
        for (const s of shards) {
          // durable before the rename publishes them: a crash after publish leaves whole shards
          fsyncSync(s.fd as number);
          closeSync(s.fd as number);
          s.fd = undefined;
        }
        if (shards.length > 1) {
          const weightMap: Record<string, string> = {};
          let total = 0;
          for (const s of shards)
            for (const t of s.layout.tensors) {
              weightMap[t.name] = s.file;
              total += t.end - t.begin;
            }
          writeFileSync(join(tmp, INDEX_FILE), pyIndexJson(total, weightMap, opts.indexMetadata ?? {}));
        }
        for (const [name, content] of Object.entries(extraFiles)) {
          if (name.includes("/") || name.includes("\\") || name === ".." || name === ".")
            throw new SafetensorsError({
              file: join(outDir, name),
              reason: "extra file names must be plain file names",
            });
          writeFileSync(join(tmp, name), content);
        }
        publish(tmp, outDir);
      } catch (e) {
        cleanup();
        if (e instanceof SafetensorsError) throw e;
        throw new SafetensorsError({ file: outDir, reason: `cannot finish the checkpoint: ${(e as Error).message}` });
      }
    },
    abort() {
      if (done) return;
      done = true;
      cleanup();
    },
  };
}

function writeAll(fd: number, data: Uint8Array, position: number) {
  for (let off = 0; off < data.byteLength; ) {
    const n = writeSync(fd, data, off, Math.min(CHUNK, data.byteLength - off), position + off);
    off += n;
  }
}

// Replace outDir by tmp: an existing outDir is moved aside first and removed after the rename.
function publish(tmp: string, outDir: string) {
  if (!existsSync(outDir)) {
    renameSync(tmp, outDir);
    return;
  }
  const old = `${tmp}.old`;
  renameSync(outDir, old);
  try {
    renameSync(tmp, outDir);
  } catch (e) {
    renameSync(old, outDir);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

/**
 * One safetensors file written tensor by tensor at its final offset (no whole-file buffer),
 * fsynced, then renamed into place: readers see the whole file or none. `tensors` keeps its order
 * only in what the caller records; the header is laid out as safetensors' own writer does.
 */
export function writeSafetensorsFile(
  path: string,
  tensors: ReadonlyArray<readonly [string, Tensor]>,
  metadata?: Record<string, string>,
): void {
  const layout = layoutSafetensors(
    tensors.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
    metadata,
    path,
  );
  const byName = new Map(tensors);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    writeAll(fd, layout.header, 0);
    for (const t of layout.tensors) {
      const data = (byName.get(t.name) as Tensor).data;
      if (data.byteLength !== t.end - t.begin)
        throw new SafetensorsError({
          file: path,
          tensor: t.name,
          reason: `has ${data.byteLength} bytes, ${t.dtype} [${t.shape}] needs ${t.end - t.begin}`,
        });
      writeAll(fd, data, layout.header.length + t.begin);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError({ file: path, reason: `write failed: ${(e as Error).message}` });
  }
}
