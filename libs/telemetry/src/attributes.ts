import type { Attributes } from "@opentelemetry/api";

/** Attribute keys every moeq span uses; stable, since Jaeger searches and dashboards key on them. */
export const Attr = {
  runId: "moeq.run_id",
  stage: "moeq.stage",
  layer: "moeq.layer",
  expert: "moeq.expert",
  proj: "moeq.proj",
  tokensRouted: "moeq.tokens_routed",
  weightMass: "moeq.weight_mass",
  bytes: "moeq.bytes",
  algorithm: "moeq.algorithm",
  loss: "moeq.loss",
  queueWaitMs: "moeq.queue_wait_ms",
  computeMs: "moeq.compute_ms",
} as const;

/** The per-projection operations of a run; each is the name of its projection-level span. */
export const Operations = ["load", "route", "calibrate", "quantize", "pack", "evaluate"] as const;
export type Operation = (typeof Operations)[number];

/** Span names above the projection level: run → stage → layer → expert → projection. */
export const SpanNames = { run: "run", layer: "layer", expert: "expert" } as const;

/** What a stage knows about one unit of work; every field is optional and maps to one `moeq.*` key. */
export interface WorkAttributes {
  readonly layer?: number;
  readonly expert?: number;
  readonly proj?: string;
  readonly tokensRouted?: number;
  readonly weightMass?: number;
  readonly bytes?: number;
  readonly algorithm?: string;
  readonly loss?: number;
  readonly queueWaitMs?: number;
  readonly computeMs?: number;
}

const keyOf: { readonly [K in keyof WorkAttributes]-?: string } = {
  layer: Attr.layer,
  expert: Attr.expert,
  proj: Attr.proj,
  tokensRouted: Attr.tokensRouted,
  weightMass: Attr.weightMass,
  bytes: Attr.bytes,
  algorithm: Attr.algorithm,
  loss: Attr.loss,
  queueWaitMs: Attr.queueWaitMs,
  computeMs: Attr.computeMs,
};

/** `{ layer: 3, loss: 0.1 }` → `{ "moeq.layer": 3, "moeq.loss": 0.1 }`; undefined fields are left out. */
export function workAttributes(w: WorkAttributes): Attributes {
  const out: Attributes = {};
  for (const k of Object.keys(w) as (keyof WorkAttributes)[]) {
    const v = w[k];
    if (v !== undefined) out[keyOf[k]] = v;
  }
  return out;
}
