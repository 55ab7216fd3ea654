import { Schema } from "effect";
import { Bytes, NonNegativeInt, patterned, Sha256Hex } from "./ids.ts";

/** Bits per element; sub-byte types (e2m1, i4, u4) are packed two per byte, low nibble first. */
export const dtypeBits = {
  f64: 64,
  f32: 32,
  f16: 16,
  bf16: 16,
  f8e4m3: 8,
  f8e5m2: 8,
  e8m0: 8,
  e2m1: 4,
  i64: 64,
  i32: 32,
  i16: 16,
  i8: 8,
  u64: 64,
  u32: 32,
  u16: 16,
  u8: 8,
  i4: 4,
  u4: 4,
  bool: 8,
} as const;
export type Dtype = keyof typeof dtypeBits;

export const Dtype = Schema.Literals(Object.keys(dtypeBits) as Dtype[]).annotate({
  identifier: "Dtype",
  description: "element type; e2m1/i4/u4 pack two elements per byte (low nibble first)",
});

export const Shape = Schema.Array(NonNegativeInt).annotate({ identifier: "Shape" });

export const Checksum = Schema.Struct({
  algo: Schema.Literal("sha256"),
  hex: Sha256Hex,
}).annotate({ identifier: "Checksum", description: "checksum of exactly the tensor's bytes" });

export const FileLoc = Schema.Struct({
  kind: Schema.Literal("file"),
  path: Schema.String.annotate({ description: "absolute path; must lie under an allowed root of the run" }),
  offset: NonNegativeInt,
  bytes: NonNegativeInt,
}).annotate({
  identifier: "FileLoc",
  description: "byte range of a file (e.g. a safetensors shard), mapped read-only",
});

export const ShmLoc = Schema.Struct({
  kind: Schema.Literal("shm"),
  segment: patterned(
    "ShmSegmentName",
    /^moeq-[A-Za-z0-9_-]{1,64}-[0-9a-z.]{1,40}$/,
    "POSIX shm name without the leading slash: moeq-<runId>-<unique>",
  ),
  offset: NonNegativeInt,
  bytes: NonNegativeInt,
}).annotate({ identifier: "ShmLoc", description: "byte range of a POSIX shared-memory segment of this run" });

export const CudaLoc = Schema.Struct({
  kind: Schema.Literal("cuda"),
  device: NonNegativeInt,
  handle: Bytes.annotate({ description: "64-byte cudaIpcMemHandle_t of the allocation's base" }),
  offset: NonNegativeInt,
  bytes: NonNegativeInt,
  event: Schema.optionalKey(
    Bytes.annotate({
      description:
        "64-byte cudaIpcEventHandle_t recorded after the producer's writes; consumers order their GPU work after it",
    }),
  ),
}).annotate({ identifier: "CudaLoc", description: "CUDA IPC allocation (same host, other process)" });

export const ObjLoc = Schema.Struct({
  kind: Schema.Literal("obj"),
  bucket: Schema.String,
  key: Schema.String,
  bytes: NonNegativeInt,
}).annotate({ identifier: "ObjLoc", description: "NATS object store entry (consumers on other hosts)" });

export const InlineLoc = Schema.Struct({
  kind: Schema.Literal("inline"),
  data: Bytes.annotate({ description: "the tensor's bytes (at most 64 KiB)" }),
}).annotate({ identifier: "InlineLoc", description: "small tensors carried in the message itself" });

export const Location = Schema.Union([FileLoc, ShmLoc, CudaLoc, ObjLoc, InlineLoc]).annotate({
  identifier: "Location",
});
export type Location = typeof Location.Type;

export const TensorDescriptor = Schema.Struct({
  dtype: Dtype,
  shape: Shape,
  loc: Location,
  checksum: Schema.optionalKey(Checksum),
}).annotate({
  identifier: "TensorDescriptor",
  description: "where a tensor's bytes are; byte length must equal ceil(prod(shape) * bits(dtype) / 8)",
});
export type TensorDescriptor = typeof TensorDescriptor.Type;

export const INLINE_MAX_BYTES = 64 * 1024;

export function numel(shape: ReadonlyArray<number>): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function byteLengthOf(dtype: Dtype, shape: ReadonlyArray<number>): number {
  return Math.ceil((numel(shape) * dtypeBits[dtype]) / 8);
}

export function locationBytes(loc: Location): number {
  return loc.kind === "inline" ? loc.data.byteLength : loc.bytes;
}
