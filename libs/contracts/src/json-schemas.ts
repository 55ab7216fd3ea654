import { Schema } from "effect";
import { Event } from "./events.ts";
import { patterns } from "./ids.ts";
import { Graph, StageManifest } from "./manifest.ts";
import { TensorDescriptor } from "./tensor.ts";
import { DeadLetter, Lease, QuantizeBatchWork, QuantizeExpertWork, WorkItem } from "./work.ts";

/** The documents under schemas/: file name → schema. */
export const publishedSchemas = {
  "event.json": Event,
  "work-item.json": WorkItem,
  "quantize-expert-work.json": QuantizeExpertWork,
  "quantize-batch-work.json": QuantizeBatchWork,
  "dead-letter.json": DeadLetter,
  "lease.json": Lease,
  "tensor-descriptor.json": TensorDescriptor,
  "stage-manifest.json": StageManifest,
  "graph.json": Graph,
} as const;

const BIN = {
  "x-msgpack": "bin",
  description: "raw bytes: a msgpack bin value (decodes to bytes / Uint8Array)",
};

// Effect renders Uint8Array as a base64 string (its JSON codec); on the bus it is msgpack bin.
function binary(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(binary);
  if (node === null || typeof node !== "object") return node;
  const o = node as Record<string, unknown>;
  if (o.type === "string" && o.contentEncoding === "base64") {
    const { type: _t, format: _f, contentEncoding: _c, ...rest } = o;
    return {
      ...rest,
      ...BIN,
      ...(typeof rest.description === "string" ? { description: `${rest.description}; ${BIN.description}` } : {}),
    };
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, binary(v)]));
}

export function jsonSchemaOf(name: string, schema: Schema.Top): Record<string, unknown> {
  const doc = Schema.toJsonSchemaDocument(schema);
  const defs = { ...(doc.definitions as Record<string, Record<string, unknown>>) };
  for (const [id, re] of Object.entries(patterns)) if (defs[id]) defs[id] = { ...defs[id], pattern: re.source };
  return binary({
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: `https://moeq.dev/schemas/${name}`,
    "x-encoding": "msgpack (plain maps; no extension types)",
    ...(doc.schema as object),
    $defs: defs,
  }) as Record<string, unknown>;
}

/** File name → exact file contents (stable key order, trailing newline). */
export function renderSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(publishedSchemas))
    out[name] = `${JSON.stringify(jsonSchemaOf(name, schema), null, 2).replaceAll("#/definitions/", "#/$defs/")}\n`;
  return out;
}
