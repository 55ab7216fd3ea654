// The header that safetensors' Rust writer (which Python's save_file calls) produces: tensors in
// descending `Dtype` enum order then by name (bytewise UTF-8), serde_json's compact output,
// padded with spaces so the data section starts on a multiple of 8. Same input → same bytes.
import { type DType, dtypeBytes, numel, safetensorsDtypeRank } from "@moeq/tensor";
import { SafetensorsError } from "./errors.ts";
import { MAX_HEADER_BYTES } from "./header.ts";

export interface LayoutInput {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}
export interface LaidOut extends LayoutInput {
  readonly begin: number;
  readonly end: number;
}
export interface Layout {
  /** length prefix + padded JSON: the first bytes of the file */
  readonly header: Uint8Array;
  /** in file order */
  readonly tensors: LaidOut[];
  readonly dataLength: number;
}

const enc = new TextEncoder();
const compareUtf8 = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

export const tensorByteLength = (t: LayoutInput): number => numel(t.shape) * dtypeBytes(t.dtype);

export function layoutSafetensors(
  inputs: readonly LayoutInput[],
  metadata: Record<string, string> | undefined,
  file: string,
): Layout {
  const seen = new Set<string>();
  for (const t of inputs) {
    if (seen.has(t.name)) throw new SafetensorsError({ file, tensor: t.name, reason: "tensor named twice" });
    seen.add(t.name);
    if (!t.name.isWellFormed())
      throw new SafetensorsError({ file, tensor: t.name, reason: "name is not valid Unicode" });
    if (t.name === "__metadata__") throw new SafetensorsError({ file, tensor: t.name, reason: "reserved name" });
    for (const d of t.shape)
      if (!Number.isSafeInteger(d) || d < 0)
        throw new SafetensorsError({ file, tensor: t.name, reason: `bad shape [${t.shape}]` });
  }
  const sorted = [...inputs].sort(
    (a, b) => safetensorsDtypeRank(b.dtype) - safetensorsDtypeRank(a.dtype) || compareUtf8(a.name, b.name),
  );
  const parts: string[] = [];
  if (metadata !== undefined) {
    const kv = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== "string") throw new SafetensorsError({ file, reason: `metadata "${k}" is not a string` });
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"__metadata__":{${kv.join(",")}}`);
  }
  let offset = 0;
  const tensors: LaidOut[] = sorted.map((t) => {
    const begin = offset;
    offset += tensorByteLength(t);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${begin},${offset}]}`,
    );
    return { name: t.name, dtype: t.dtype, shape: [...t.shape], begin, end: offset };
  });
  const json = enc.encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES)
    throw new SafetensorsError({ file, reason: `header would be ${padded} bytes, over the limit` });
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, tensors, dataLength: offset };
}
