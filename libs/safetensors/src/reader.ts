// Read side: headers are read with plain file reads and validated up front; tensor bytes come
// from a read-only mmap of each shard made on first use, so opening costs the same for 1 MB or
// 1 TB and only the pages of touched tensors are ever read.
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { isAbsolute, join, normalize, sep } from "node:path";
import { native } from "@moeq/native";
import { type DType, type Tensor, toF32 } from "@moeq/tensor";
import { SafetensorsError } from "./errors.ts";
import { headerLength, LENGTH_PREFIX, type ParsedHeader, parseHeader } from "./header.ts";

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  file: string;
  /** absolute byte offset in `file` */
  dataOffset: number;
  byteLength: number;
}

export interface Checkpoint {
  readonly dir: string;
  /** __metadata__ of the shards (the first shard wins on conflicting keys); {} when none has any */
  readonly metadata: Record<string, string>;
  /** the shard files, in the order they were opened */
  readonly files: readonly string[];
  names(): string[];
  has(n: string): boolean;
  entry(n: string): TensorEntry;
  /** zero-copy view into the mapped file; valid until close() */
  tensor(n: string): Tensor;
  /** decoded copy */
  f32(n: string): Float32Array;
  /** __metadata__ exactly as the header of `file` has it (undefined: no __metadata__ key) */
  fileMetadata(file: string): Record<string, string> | undefined;
  /** unmaps every shard: views returned by tensor() become empty */
  close(): void;
}

export const INDEX_FILE = "model.safetensors.index.json";
export const SINGLE_FILE = "model.safetensors";

interface Shard {
  readonly file: string;
  readonly header: ParsedHeader;
  buffer?: ArrayBuffer;
}

function readShardHeader(file: string): ParsedHeader {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (e) {
    throw new SafetensorsError({ file, reason: `cannot open: ${(e as Error).message}` });
  }
  try {
    const size = fstatSync(fd).size;
    const prefix = new Uint8Array(8);
    const got = size >= 8 ? readSync(fd, prefix, 0, 8, 0) : 0;
    const n = headerLength(prefix.subarray(0, got), size, file);
    const bytes = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const r = readSync(fd, bytes, off, n - off, LENGTH_PREFIX + off);
      if (r === 0) throw new SafetensorsError({ file, reason: "file shrank while reading the header" });
      off += r;
    }
    return parseHeader(bytes, size, file);
  } finally {
    closeSync(fd);
  }
}

class ShardedCheckpoint implements Checkpoint {
  readonly metadata: Record<string, string> = {};
  private readonly byName = new Map<string, { shard: Shard; entry: TensorEntry }>();
  private closed = false;

  readonly dir: string;
  private readonly shards: Shard[];

  constructor(dir: string, shards: Shard[]) {
    this.dir = dir;
    this.shards = shards;
    for (const shard of [...shards].reverse()) Object.assign(this.metadata, shard.header.metadata ?? {});
    for (const shard of shards) {
      const base = LENGTH_PREFIX + shard.header.headerLength;
      for (const e of shard.header.entries) {
        const prev = this.byName.get(e.name);
        if (prev)
          throw new SafetensorsError({
            file: shard.file,
            tensor: e.name,
            reason: `tensor named twice (also in ${prev.shard.file})`,
          });
        this.byName.set(e.name, {
          shard,
          entry: {
            name: e.name,
            dtype: e.dtype,
            shape: e.shape,
            file: shard.file,
            dataOffset: base + e.begin,
            byteLength: e.end - e.begin,
          },
        });
      }
    }
  }

  get files(): readonly string[] {
    return this.shards.map((s) => s.file);
  }
  names(): string[] {
    return [...this.byName.keys()];
  }
  has(n: string): boolean {
    return this.byName.has(n);
  }
  private lookup(n: string) {
    const hit = this.byName.get(n);
    if (!hit) throw new SafetensorsError({ file: this.dir, tensor: n, reason: "no such tensor in the checkpoint" });
    return hit;
  }
  entry(n: string): TensorEntry {
    const { entry } = this.lookup(n);
    return { ...entry, shape: [...entry.shape] };
  }
  tensor(n: string): Tensor {
    const { shard, entry } = this.lookup(n);
    if (this.closed) throw new SafetensorsError({ file: shard.file, tensor: n, reason: "checkpoint is closed" });
    if (!shard.buffer) {
      try {
        shard.buffer = native.mmapFile(shard.file);
      } catch (e) {
        throw new SafetensorsError({ file: shard.file, tensor: n, reason: (e as Error).message });
      }
    }
    if (shard.buffer.byteLength < entry.dataOffset + entry.byteLength)
      throw new SafetensorsError({ file: shard.file, tensor: n, reason: "file was truncated after it was opened" });
    return {
      dtype: entry.dtype,
      shape: [...entry.shape],
      data: new Uint8Array(shard.buffer, entry.dataOffset, entry.byteLength),
    };
  }
  f32(n: string): Float32Array {
    const t = this.tensor(n);
    try {
      return toF32(t);
    } catch (e) {
      throw new SafetensorsError({ file: this.lookup(n).shard.file, tensor: n, reason: (e as Error).message });
    }
  }
  fileMetadata(file: string): Record<string, string> | undefined {
    const s = this.shards.find((x) => x.file === file);
    if (!s) throw new SafetensorsError({ file, reason: "not a file of this checkpoint" });
    return s.header.metadata ? { ...s.header.metadata } : undefined;
  }
  close(): void {
    this.closed = true;
    for (const s of this.shards) {
      if (s.buffer) native.munmapFile(s.buffer);
      s.buffer = undefined;
    }
  }
}

/** One safetensors file. */
export function openSafetensors(path: string): Checkpoint {
  return new ShardedCheckpoint(path, [{ file: path, header: readShardHeader(path) }]);
}

function readIndex(dir: string): Map<string, string[]> {
  const file = join(dir, INDEX_FILE);
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new SafetensorsError({ file, reason: `cannot read index: ${(e as Error).message}` });
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw new SafetensorsError({ file, reason: "index has no weight_map object" });
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || shard.length === 0)
      throw new SafetensorsError({ file, tensor, reason: "weight_map value is not a file name" });
    const norm = normalize(shard);
    if (isAbsolute(shard) || norm.startsWith(`..${sep}`) || norm === "..")
      throw new SafetensorsError({ file, tensor, reason: `shard "${shard}" is outside the checkpoint directory` });
    const list = byShard.get(shard) ?? [];
    list.push(tensor);
    byShard.set(shard, list);
  }
  return byShard;
}

/** A checkpoint directory: model.safetensors.index.json, else model.safetensors, else every
 * *.safetensors in it (a path to a single file also works). */
export function openCheckpoint(dir: string): Checkpoint {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(dir);
  } catch (e) {
    throw new SafetensorsError({ file: dir, reason: `cannot open checkpoint: ${(e as Error).message}` });
  }
  if (st.isFile()) return openSafetensors(dir);
  if (existsSync(join(dir, INDEX_FILE))) {
    const byShard = readIndex(dir);
    const shards: Shard[] = [];
    for (const [name, tensors] of [...byShard].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      const file = join(dir, name);
      if (!existsSync(file))
        throw new SafetensorsError({ file, tensor: tensors[0], reason: `shard named in ${INDEX_FILE} is missing` });
      const header = readShardHeader(file);
      const present = new Set(header.entries.map((e) => e.name));
      for (const t of tensors)
        if (!present.has(t))
          throw new SafetensorsError({
            file,
            tensor: t,
            reason: `${INDEX_FILE} maps the tensor to this shard, which lacks it`,
          });
      shards.push({ file, header });
    }
    return new ShardedCheckpoint(dir, shards);
  }
  const single = join(dir, SINGLE_FILE);
  if (existsSync(single)) return new ShardedCheckpoint(dir, [{ file: single, header: readShardHeader(single) }]);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".safetensors"))
    .sort();
  if (files.length === 0)
    throw new SafetensorsError({ file: dir, reason: "no .safetensors files (and no index) in the directory" });
  return new ShardedCheckpoint(
    dir,
    files.map((f) => ({ file: join(dir, f), header: readShardHeader(join(dir, f)) })),
  );
}
