// prefill attention variants (owner: models)

/** Row (b,t) of q/k/v/out starts at (b·seqLen+t)·stride; head h at h·headDim (h·vHeadDim for v/out). */
export interface AttentionOptions {
  batch: number;
  seqLen: number;
  numHeads: number;
  /** GQA/MQA: q head h reads kv head ⌊h / (numHeads/numKvHeads)⌋. Default numHeads. */
  numKvHeads?: number;
  headDim: number;
  /** Value/output head dim when it differs from q/k (MLA). Default headDim. */
  vHeadDim?: number;
  /** Default headDim^-½. */
  scale?: number;
  /** Default true. */
  causal?: boolean;
  /** Sliding window: key j is visible from query i iff i − j < window (0 = off). */
  window?: number;
  /** Chunked attention: only keys in the same ⌊i/chunk⌋ block (0 = off). */
  chunk?: number;
  /** Per-head sink logits [numHeads] (GPT-OSS): join the softmax denominator, then dropped. */
  sinks?: Float32Array;
  qStride?: number;
  kStride?: number;
  vStride?: number;
  outStride?: number;
}

type AttnFn<R> = (q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, opts: AttentionOptions) => R;

export interface AttentionKernels {
  /** On the libuv pool, (batch, head) pairs split over hardware threads. */
  attentionF32: AttnFn<Promise<void>>;
  attentionF32Sync: AttnFn<void>;
  attentionF32Ref: AttnFn<void>;
}
