// Element types as safetensors names them, with sizes and the writer's sort order.

export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "U16"
  | "U32"
  | "U64"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2"
  | "F8_E8M0";

const BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
};

export const DTYPES: readonly DType[] = Object.keys(BYTES) as DType[];

export const isDType = (s: unknown): s is DType => typeof s === "string" && Object.hasOwn(BYTES, s);

export const dtypeBytes = (d: DType): number => BYTES[d];

// Rank of each dtype in safetensors' `Dtype` enum (safetensors/src/tensor.rs). Its writer lays
// tensors out by descending rank, then by name; byte-identical output needs the same order, so
// the dtypes we do not support keep their slots.
const SAFETENSORS_ORDER = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
];
export const safetensorsDtypeRank = (d: DType): number => SAFETENSORS_ORDER.indexOf(d);

// Dtypes safetensors knows but this project cannot hold (sub-byte, FNUZ float8, complex): readers
// report them as unsupported rather than unknown.
export const KNOWN_UNSUPPORTED_DTYPES: readonly string[] = [
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "C64",
];

export const numel = (shape: readonly number[]): number => {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
};
