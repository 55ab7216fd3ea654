// Tensors between stages: durable files in the run's work dir, referenced by `file` descriptors
// (mapped read-only by consumers, so nothing is copied and a restarted consumer — or another
// implementation in another language — reads the same bytes). Small tensors may travel inline.
import { join } from "node:path";
import { byteLengthOf, type Dtype, type TensorDescriptor } from "@moeq/contracts";
import type { WeightSource } from "@moeq/models";
import { native } from "@moeq/native";
import { AllowedRoots } from "@moeq/store";
import type { DType, Tensor } from "@moeq/tensor";
import { TensorFileError } from "./errors.ts";
import { writeFileAtomic } from "./run-dir.ts";

const TO_ST: Partial<Record<Dtype, DType>> = {
  f64: "F64",
  f32: "F32",
  f16: "F16",
  bf16: "BF16",
  i64: "I64",
  i32: "I32",
  i16: "I16",
  i8: "I8",
  u8: "U8",
  u16: "U16",
  u32: "U32",
  u64: "U64",
  bool: "BOOL",
  f8e4m3: "F8_E4M3",
  f8e5m2: "F8_E5M2",
  e8m0: "F8_E8M0",
};
const FROM_ST = Object.fromEntries(Object.entries(TO_ST).map(([k, v]) => [v, k])) as Record<DType, Dtype>;

export const toSafetensorsDtype = (d: Dtype, source: string): DType => {
  const t = TO_ST[d];
  if (!t) throw new TensorFileError({ source, message: `${source}: dtype ${d} has no safetensors equivalent` });
  return t;
};
export const fromSafetensorsDtype = (d: DType): Dtype => FROM_ST[d];

/** Writes `data` to `<dir>/<name>` atomically and returns its `file` descriptor. */
export function writeTensorFile(
  dir: string,
  name: string,
  dtype: Dtype,
  shape: readonly number[],
  data: ArrayBufferView,
): TensorDescriptor {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const want = byteLengthOf(dtype, shape);
  if (bytes.byteLength !== want)
    throw new TensorFileError({
      source: name,
      message: `${name}: ${bytes.byteLength} bytes for ${dtype}[${shape}], expected ${want}`,
    });
  const path = join(dir, name);
  writeFileAtomic(path, bytes);
  return { dtype, shape: [...shape], loc: { kind: "file", path, offset: 0, bytes: want } };
}

/** Opens `file` / `inline` descriptors; files must lie under `roots`. Returns the tensor's bytes. */
export class TensorReader {
  private readonly roots: AllowedRoots;

  constructor(roots: readonly string[]) {
    this.roots = new AllowedRoots(roots);
  }

  bytes(d: TensorDescriptor, source: string): Uint8Array {
    const want = byteLengthOf(d.dtype, d.shape);
    const loc = d.loc;
    if (loc.kind === "inline") {
      if (loc.data.byteLength !== want)
        throw new TensorFileError({
          source,
          message: `${source}: inline tensor has ${loc.data.byteLength} bytes, ${d.dtype}[${d.shape}] needs ${want}`,
        });
      return loc.data;
    }
    if (loc.kind !== "file")
      throw new TensorFileError({
        source,
        message: `${source}: ${loc.kind} descriptors are not used by this pipeline (file or inline expected)`,
      });
    if (loc.bytes !== want)
      throw new TensorFileError({
        source,
        message: `${source}: descriptor says ${loc.bytes} bytes, ${d.dtype}[${d.shape}] needs ${want}`,
      });
    let real: string;
    let size: number;
    try {
      ({ real, size } = this.roots.resolveFile(loc.path, source));
    } catch (e) {
      throw new TensorFileError({ source, message: (e as Error).message });
    }
    if (loc.offset + loc.bytes > size)
      throw new TensorFileError({
        source,
        message: `${source}: [${loc.offset}, ${loc.offset + loc.bytes}) is past the end of ${loc.path} (${size} bytes)`,
      });
    if (loc.bytes === 0) return new Uint8Array(0);
    return new Uint8Array(native.mapFileRange(real, loc.offset, loc.bytes));
  }

  tensor(d: TensorDescriptor, source: string): Tensor {
    return { dtype: toSafetensorsDtype(d.dtype, source), shape: [...d.shape], data: this.bytes(d, source) };
  }

  f32(d: TensorDescriptor, source: string): Float32Array {
    if (d.dtype !== "f32") throw new TensorFileError({ source, message: `${source}: expected f32, got ${d.dtype}` });
    const b = this.bytes(d, source);
    return b.byteOffset % 4 === 0
      ? new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)
      : new Float32Array(b.slice().buffer);
  }

  i32(d: TensorDescriptor, source: string): Int32Array {
    if (d.dtype !== "i32") throw new TensorFileError({ source, message: `${source}: expected i32, got ${d.dtype}` });
    const b = this.bytes(d, source);
    return b.byteOffset % 4 === 0
      ? new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4)
      : new Int32Array(b.slice().buffer);
  }
}

/** A WeightSource over name → descriptor maps (e.g. the loader's LayerLoaded events), mapped lazily. */
export function descriptorSource(
  reader: TensorReader,
  descriptors: ReadonlyMap<string, TensorDescriptor>,
): WeightSource {
  const cache = new Map<string, Tensor>();
  return {
    has: (n) => descriptors.has(n),
    tensor: (n) => {
      let t = cache.get(n);
      if (!t) {
        const d = descriptors.get(n);
        if (!d) throw new TensorFileError({ source: n, message: `tensor '${n}' was not published by the loader` });
        t = reader.tensor(d, n);
        cache.set(n, t);
      }
      return t;
    },
    names: () => [...descriptors.keys()],
  };
}
