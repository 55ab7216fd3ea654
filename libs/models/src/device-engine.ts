// The forward engine on a CUDA device: the CPU Engine's per-layer calls (attention → residual and
// MoE input; router; one expert on given rows; MoE; dense MLP; finishLayer; final norm; logits)
// with activations kept in device memory (f32) between calls. Weights are uploaded as stored
// (bf16 / f16 / f32 / f8_e4m3 bytes) and decoded on the device inside each GEMM (cudaGemmMixed).
// The glue steps use the native engine kernels with the CPU engine's rounding, so precision
// "f32" reproduces the CPU engine to f32 round-off; "tf32" / "bf16" run every GEMM and attention
// on the tensor cores. See docs/gpu.md ("The device engine") for ownership rules.
import { type CudaBuffer, type CudaKernels, type CudaPrecision, cudaKernels, type WeightDtype } from "@moeq/native";
import type { SequenceBatch } from "./blocks/attention.ts";
import { perExpertName } from "./blocks/experts.ts";
import type { LinearCall, LinearSite } from "./blocks/linear-hook.ts";
import { dispatch } from "./blocks/moe.ts";
import { type RopeSpec, type RopeTables, ropeTables } from "./blocks/rope.ts";
import { type Routing, route } from "./blocks/routing.ts";
import { Engine, type ForwardOptions, type ForwardResult, linearSites } from "./engine.ts";
import { DeviceUnsupportedError, ModelInputError, ModelWeightError } from "./errors.ts";
import type {
  AttentionSpec,
  DeltaNetSpec,
  DenseMlpSpec,
  ExpertsSpec,
  LayerSpec,
  LinearSpec,
  MlaSpec,
  ModelSpec,
  MoeSpec,
  NormSpec,
} from "./spec.ts";
import { type StoredCodes, storedCodes, tensorToF32, type WeightSource } from "./weights.ts";

/** A row-major f32 [rows, cols] matrix in device memory. */
export interface DeviceMatrix {
  readonly buf: CudaBuffer;
  readonly rows: number;
  readonly cols: number;
}

/** Routing with every array on the device (the CPU Routing's fields). */
export interface DeviceRouting {
  readonly rows: number;
  readonly numExperts: number;
  readonly topK: number;
  /** [rows, E] raw router logits */
  readonly logits: DeviceMatrix;
  /** [rows, E] the architecture's scores (see Routing.scores) */
  readonly scores: DeviceMatrix;
  /** i32 [rows, topK], best first */
  readonly indices: CudaBuffer;
  /** f32 [rows, topK] combine weights */
  readonly weights: CudaBuffer;
}

/** Rows of x routed to each expert (see DeviceEngine.dispatch). */
export interface DeviceDispatch {
  /** [E + 1]: expert e's entries are [offsets[e], offsets[e + 1]) */
  readonly offsets: Int32Array;
  /** per expert: token rows and routing weights (host) */
  readonly groups: readonly { readonly rows: Int32Array; readonly weights: Float32Array }[];
  /** i32 [total] token rows, expert by expert */
  readonly deviceRows: CudaBuffer;
  /** f32 [total] routing weights, expert by expert */
  readonly deviceWeights: CudaBuffer;
}

/**
 * Sees the device input [rows, inFeatures] of every Linear on a quantizable weight before its
 * GEMM (the sites of Engine.setLinearHook). `x` belongs to the engine and is valid only during the
 * call (copy what you keep). Return undefined to use x as is, or a new [rows, inFeatures] matrix on
 * the same device to multiply instead (the engine frees it after the GEMM).
 */
export type DeviceLinearHook = (
  call: LinearCall,
  x: DeviceMatrix,
) => DeviceMatrix | undefined | Promise<DeviceMatrix | undefined>;

export interface DeviceEngineOptions {
  /** CUDA device index (default 0). */
  readonly device?: number;
  /**
   * GEMM / attention math: "f32" (default; exact f32, what the goldens check), "tf32" or "bf16"
   * (tensor cores, f32 accumulation).
   */
  readonly precision?: CudaPrecision;
  /** Stored weights kept on the device between calls (default 8 GiB; least recently used go first). */
  readonly weightCacheBytes?: number;
  /** Rows per attention pass: sequences are processed in groups of ⌊attentionRows / T⌋ (default 65536). */
  readonly attentionRows?: number;
  /** Bytes of score matrices per attention GEMM chunk (default 1 GiB). */
  readonly attentionScratchBytes?: number;
}

/**
 * Why the device engine cannot run a model, per layer and block; empty when it can. (DeepSeek-V3.2's
 * DSA sparse attention is refused per call, by sequence length: shorter sequences are dense MLA.)
 */
export function deviceUnsupported(spec: ModelSpec): string[] {
  const out: string[] = [];
  for (const L of spec.layers) {
    const a = L.attention;
    if (a.kind === "gated_deltanet" && Math.max(a.kHeadDim, a.vHeadDim) > 256)
      out.push(`layer ${L.index}: gated DeltaNet with head dims over 256 is not implemented on the device engine`);
  }
  return out;
}

type Stored = { readonly buf: CudaBuffer; readonly dtype: WeightDtype; readonly numel: number };

const DTYPES: Partial<Record<string, WeightDtype>> = { BF16: "bf16", F16: "f16", F32: "f32", F8_E4M3: "f8_e4m3" };
const BYTES: Record<WeightDtype, number> = { f32: 4, bf16: 2, f16: 2, f8_e4m3: 1 };

/** Stored weights on the device, least recently used evicted beyond the budget (never those of the running call). */
class DeviceWeights {
  private readonly stored = new Map<string, { s: Stored; gen: number }>();
  private readonly f32s = new Map<string, { s: Stored; gen: number }>();
  private bytes = 0;
  private gen = 0;
  source: WeightSource;

  constructor(
    private readonly cu: CudaKernels,
    private readonly device: number,
    source: WeightSource,
    private readonly budget: number,
  ) {
    this.source = source;
  }

  /** Starts a call: what it touches stays until the next one. */
  tick(): void {
    this.gen++;
  }

  private put(map: Map<string, { s: Stored; gen: number }>, name: string, s: Stored) {
    this.evict(s.buf.bytes);
    map.set(name, { s, gen: this.gen });
    this.bytes += s.buf.bytes;
  }

  private evict(need: number) {
    for (const map of [this.stored, this.f32s])
      for (const [k, v] of map) {
        if (this.bytes + need <= this.budget) return;
        if (v.gen === this.gen) continue;
        map.delete(k);
        this.bytes -= v.s.buf.bytes;
        this.cu.cudaFree(v.s.buf);
      }
  }

  private upload(bytes: Uint8Array | Float32Array): CudaBuffer {
    const buf = this.cu.cudaAlloc(Math.max(bytes.byteLength, 4), this.device);
    if (bytes.byteLength > 0) this.cu.cudaUpload(buf, bytes);
    return buf;
  }

  /** The tensor as stored (widened to f32 on the host only for dtypes the device cannot decode). */
  raw(name: string, expectNumel: number): Stored {
    const hit = this.stored.get(name);
    if (hit) {
      hit.gen = this.gen;
      return hit.s;
    }
    const t = this.source.tensor(name);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== expectNumel)
      throw new ModelWeightError({
        tensor: name,
        message: `tensor '${name}' has ${numel} elements, the architecture expects ${expectNumel}`,
      });
    const codes = storedCodes(t);
    if (codes) {
      const s = this.decodeCodes(name, codes, numel);
      this.put(this.stored, name, s);
      return s;
    }
    const dtype = DTYPES[t.dtype];
    const s: Stored = dtype
      ? { buf: this.upload(t.data.subarray(0, numel * BYTES[dtype])), dtype, numel }
      : { buf: this.upload(tensorToF32(t, name)), dtype: "f32", numel };
    this.put(this.stored, name, s);
    return s;
  }

  /** FP8-block / MXFP4 codes uploaded as stored and decoded on the device (never through `data`). */
  private decodeCodes(name: string, c: StoredCodes, numel: number): Stored {
    const cu = this.cu;
    if (c.kind === "fp8_block") {
      const [rows, cols] = c.codes.shape as [number, number];
      const codes = this.upload(c.codes.data.subarray(0, rows * cols));
      const scales = this.upload(c.scales);
      const bf16 = c.dtype === "BF16";
      const out = cu.cudaAlloc(Math.max(4, numel * (bf16 ? 2 : 4)), this.device);
      try {
        cu.cudaDequantFp8Block(codes, scales, out, rows, cols, c.block[0], c.block[1], bf16 ? "bf16" : "f32");
      } finally {
        cu.cudaFree(codes);
        cu.cudaFree(scales);
      }
      return { buf: out, dtype: bf16 ? "bf16" : "f32", numel };
    }
    const [E, rows, nb] = c.blocks.shape as [number, number, number, number];
    const blocks = this.upload(c.blocks.data.subarray(0, E * rows * nb * 16));
    const scales = this.upload(c.scales.data.subarray(0, E * rows * nb));
    const out = cu.cudaAlloc(Math.max(4, numel * 2), this.device);
    try {
      cu.cudaDequantMxfp4T(blocks, scales, out, E, rows, nb);
    } catch (e) {
      cu.cudaFree(out);
      throw new ModelWeightError({ tensor: name, message: `MXFP4 '${name}': ${(e as Error).message}` });
    } finally {
      cu.cudaFree(blocks);
      cu.cudaFree(scales);
    }
    return { buf: out, dtype: "bf16", numel };
  }

  /** An f32 copy (norm weights, biases, router biases). */
  f32(name: string, expectNumel: number): CudaBuffer {
    const hit = this.f32s.get(name);
    if (hit) {
      hit.gen = this.gen;
      return hit.s.buf;
    }
    const x = tensorToF32(this.source.tensor(name), name);
    if (x.length !== expectNumel)
      throw new ModelWeightError({
        tensor: name,
        message: `tensor '${name}' has ${x.length} elements, the architecture expects ${expectNumel}`,
      });
    const s: Stored = { buf: this.upload(x), dtype: "f32", numel: x.length };
    this.put(this.f32s, name, s);
    return s.buf;
  }

  invalidate(names?: Iterable<string>): void {
    const drop = (map: Map<string, { s: Stored; gen: number }>, k: string) => {
      const v = map.get(k);
      if (!v) return;
      map.delete(k);
      this.bytes -= v.s.buf.bytes;
      this.cu.cudaFree(v.s.buf);
    };
    const keys = names ? [...names] : [...this.stored.keys(), ...this.f32s.keys()];
    for (const k of keys) {
      drop(this.stored, k);
      drop(this.f32s, k);
    }
  }
}

/**
 * Layer-at-a-time forward engine on a CUDA device, call for call the CPU Engine's:
 * ```ts
 * const dev = new DeviceEngine(spec, source, { device: 0, precision: "f32" });
 * const seq = dev.sequences(B, T);
 * let h = dev.embed(ids, seq);                              // DeviceMatrix [B·T, H]
 * for (let L = 0; L < dev.numLayers; L++) {
 *   const { residual, x } = await dev.attention(L, h, seq); // x: the MoE / MLP input, on the device
 *   dev.free(h);
 *   const r = await dev.router(L, x);                       // DeviceRouting (free with freeRouting)
 *   const { out, act } = await dev.expert(L, e, rows);      // one expert on given device rows
 *   const y = await dev.moe(L, x, r);
 *   h = dev.finishLayer(residual, y);                       // new matrix; free residual, y, x
 * }
 * const logits = await dev.logits(dev.finalNorm(h));
 * ```
 * Every DeviceMatrix / DeviceRouting an engine call returns is the caller's: free it with
 * `free` / `freeRouting` (or let it be garbage-collected). Inputs are never modified or freed.
 */
export class DeviceEngine {
  readonly device: number;
  readonly precision: CudaPrecision;
  private readonly cu: CudaKernels;
  private readonly weights: DeviceWeights;
  /** host side: embeddings, routing rules the device does not run, RoPE tables */
  private readonly host: Engine;
  private readonly ropeCache = new Map<string, { cos: CudaBuffer; sin: CudaBuffer; t: RopeTables }>();
  private readonly attentionRows: number;
  private readonly scratchBytes: number;
  private hook: DeviceLinearHook | undefined;
  private sites: Map<object, LinearSite> | undefined;

  constructor(
    readonly spec: ModelSpec,
    source: WeightSource,
    opts: DeviceEngineOptions = {},
  ) {
    const why = deviceUnsupported(spec);
    if (why.length > 0)
      throw new DeviceUnsupportedError({
        modelType: spec.modelType,
        message: `${spec.modelType}: ${why.join("; ")}`,
      });
    this.device = opts.device ?? 0;
    this.cu = cudaKernels(this.device);
    this.precision = opts.precision ?? "f32";
    this.weights = new DeviceWeights(this.cu, this.device, source, opts.weightCacheBytes ?? 8 * 2 ** 30);
    this.host = new Engine(spec, source, { cacheBytes: 2 ** 28 });
    this.attentionRows = opts.attentionRows ?? 65536;
    this.scratchBytes = opts.attentionScratchBytes ?? 2 ** 30;
  }

  get numLayers(): number {
    return this.spec.layers.length;
  }

  get hiddenSize(): number {
    return this.spec.hiddenSize;
  }

  /** Swap the weight source; drops the device copies of `changed` (all when absent). */
  setSource(source: WeightSource, changed?: Iterable<string>): void {
    const names = changed ? [...changed] : undefined;
    this.weights.source = source;
    this.weights.invalidate(names);
    this.host.setSource(source, names);
  }

  /** The same sites as Engine.setLinearHook, with device inputs. `undefined` removes it. */
  setLinearHook(hook: DeviceLinearHook | undefined): void {
    this.hook = hook;
    if (hook) this.sites ??= linearSites(this.spec);
  }

  /**
   * A weight as the device holds it for the GEMMs: the stored bytes (bf16 / f16 / f32 / f8_e4m3) or,
   * for FP8-block / MXFP4 sources, its decoded bf16 / f32 form. The buffer belongs to the engine's
   * cache: valid until setSource / dispose or the next call that needs the room (copy to keep).
   */
  storedWeight(name: string): { readonly buf: CudaBuffer; readonly dtype: WeightDtype } {
    this.weights.tick();
    const t = this.weights.source.tensor(name);
    return this.weights.raw(
      name,
      t.shape.reduce((a, b) => a * b, 1),
    );
  }

  layer(L: number): LayerSpec {
    return this.host.layer(L);
  }

  isMoe(L: number): boolean {
    return this.host.isMoe(L);
  }

  sequences(batch: number, seqLen: number): SequenceBatch {
    return this.host.sequences(batch, seqLen);
  }

  // ---------- buffers

  /** A new [rows, cols] matrix (uninitialised). */
  alloc(rows: number, cols: number): DeviceMatrix {
    return { buf: this.cu.cudaAlloc(Math.max(4, rows * cols * 4), this.device), rows, cols };
  }

  upload(data: Float32Array, rows: number, cols: number): DeviceMatrix {
    if (data.length !== rows * cols)
      throw new ModelInputError({ message: `upload: ${data.length} values do not fill [${rows}, ${cols}]` });
    const m = this.alloc(rows, cols);
    if (data.length > 0) this.cu.cudaUpload(m.buf, data);
    return m;
  }

  download(m: DeviceMatrix): Float32Array {
    const out = new Float32Array(m.rows * m.cols);
    if (out.length > 0) this.cu.cudaDownload(m.buf, out);
    return out;
  }

  /** Rows [r0, r0 + n) as a view sharing m's memory (freeing the view does not free m). */
  rowsView(m: DeviceMatrix, r0: number, n: number): DeviceMatrix {
    return { buf: this.cu.cudaView(m.buf, r0 * m.cols * 4, Math.max(4, n * m.cols * 4)), rows: n, cols: m.cols };
  }

  free(...ms: (DeviceMatrix | undefined | null)[]): void {
    for (const m of ms) if (m) this.cu.cudaFree(m.buf);
  }

  freeRouting(r: DeviceRouting): void {
    this.free(r.logits, r.scores);
    this.cu.cudaFree(r.indices);
    this.cu.cudaFree(r.weights);
  }

  /** The routing with its arrays on the host (the CPU engine's Routing). */
  downloadRouting(r: DeviceRouting): Routing {
    const indices = new Int32Array(r.rows * r.topK);
    const weights = new Float32Array(r.rows * r.topK);
    if (indices.length > 0) {
      this.cu.cudaDownload(r.indices, indices);
      this.cu.cudaDownload(r.weights, weights);
    }
    return {
      rows: r.rows,
      numExperts: r.numExperts,
      topK: r.topK,
      logits: this.download(r.logits),
      scores: this.download(r.scores),
      indices,
      weights,
    };
  }

  uploadRouting(r: Routing): DeviceRouting {
    const E = r.numExperts;
    const indices = this.cu.cudaAlloc(Math.max(4, r.indices.byteLength), this.device);
    const weights = this.cu.cudaAlloc(Math.max(4, r.weights.byteLength), this.device);
    if (r.indices.length > 0) {
      this.cu.cudaUpload(indices, r.indices);
      this.cu.cudaUpload(weights, r.weights);
    }
    return {
      rows: r.rows,
      numExperts: E,
      topK: r.topK,
      logits: this.upload(r.logits, r.rows, E),
      scores: this.upload(r.scores, r.rows, E),
      indices,
      weights,
    };
  }

  // ---------- building blocks

  private async hooked(spec: object, call: () => LinearCall, x: DeviceMatrix): Promise<DeviceMatrix | undefined> {
    if (!this.hook || !this.sites?.has(spec)) return undefined;
    const c = call();
    const y = await this.hook(c, x);
    if (y !== undefined && (y.rows !== x.rows || y.cols !== x.cols || y.buf.device !== this.device))
      throw new ModelInputError({
        message: `device linear hook for '${c.weight}' (layer ${c.layer}, ${c.module}${c.expert === null ? "" : ` expert ${c.expert}`}, ${c.projection}) returned [${y.rows}, ${y.cols}] on cuda:${y.buf.device}, expected [${x.rows}, ${x.cols}] on cuda:${this.device}`,
      });
    return y;
  }

  /** y = x·Wᵀ (+ b) for a LinearSpec (row slices of fused tensors as views). */
  private async linear(spec: LinearSpec, x: DeviceMatrix): Promise<DeviceMatrix> {
    const { outFeatures: n, inFeatures: k } = spec;
    const site = this.sites?.get(spec);
    const hx = await this.hooked(
      spec,
      () => ({
        weight: spec.weight,
        layer: site?.layer ?? -1,
        module: site?.module ?? "attention",
        expert: null,
        projection: site?.projection ?? "q_proj",
      }),
      x,
    );
    const rs = spec.rowSlice;
    const w = this.weights.raw(spec.weight, (rs ? rs.totalRows : n) * k);
    const wv = rs ? this.cu.cudaView(w.buf, rs.start * k * BYTES[w.dtype], n * k * BYTES[w.dtype]) : w.buf;
    const y = this.alloc(x.rows, n);
    if (spec.bias) {
      const b = this.weights.f32(spec.bias, rs ? rs.totalRows : n);
      this.cu.cudaFillRowsF32(y.buf, rs ? this.cu.cudaView(b, rs.start * 4, n * 4) : b, x.rows, n);
    }
    if (x.rows > 0)
      this.cu.cudaGemmMixed((hx ?? x).buf, wv, y.buf, x.rows, n, k, w.dtype, true, null, !!spec.bias, this.precision);
    if (hx) this.free(hx);
    return y;
  }

  /** A GEMM on a stored weight slice: W [n, k] (transB) or [k, n]. */
  private gemm(x: DeviceMatrix, w: Stored, elemOffset: number, n: number, transB: boolean, into?: DeviceMatrix) {
    const k = x.cols;
    const b = BYTES[w.dtype];
    const y = into ?? this.alloc(x.rows, n);
    if (x.rows > 0)
      this.cu.cudaGemmMixed(
        x.buf,
        this.cu.cudaView(w.buf, elemOffset * b, n * k * b),
        y.buf,
        x.rows,
        n,
        k,
        w.dtype,
        transB,
        null,
        !!into,
        this.precision,
      );
    return y;
  }

  /** Applies a norm over rows of x (dim = spec.dim) into `into` (x itself allowed). */
  private norm(spec: NormSpec, x: DeviceMatrix, rows: number, into: DeviceMatrix): void {
    const w = spec.weight ? this.weights.f32(spec.weight, spec.dim) : null;
    if (spec.kind === "rms")
      this.cu.cudaRmsNormF32(x.buf, w, into.buf, rows, spec.dim, spec.eps, spec.plusOne ?? false);
    else
      this.cu.cudaLayerNormF32(
        x.buf,
        w,
        spec.bias ? this.weights.f32(spec.bias, spec.dim) : null,
        into.buf,
        rows,
        spec.dim,
        spec.eps,
      );
  }

  private normed(spec: NormSpec, x: DeviceMatrix): DeviceMatrix {
    const out = this.alloc(x.rows, x.cols);
    this.norm(spec, x, x.rows, out);
    return out;
  }

  /** act(gate)·up over strided views into a new [rows, cols] matrix. */
  private gatedAct(
    e: ExpertsSpec | DenseMlpSpec,
    gate: CudaBuffer,
    up: CudaBuffer,
    rows: number,
    cols: number,
    rs = cols,
    cs = 1,
  ): DeviceMatrix {
    const out = this.alloc(rows, cols);
    const cg = "clampedGlu" in e ? e.clampedGlu : undefined;
    if (cg) this.cu.cudaClampedSwigluF32(gate, up, out.buf, rows, cols, rs, cs, cg.alpha, cg.limit);
    else if (e.act === "silu") this.cu.cudaSwigluF32(gate, up, out.buf, rows, cols, rs, cs);
    else {
      this.cu.cudaStridedF32(gate, out.buf, rows, cols, rs, cs);
      this.cu.cudaActivationF32(e.act, out.buf, out.buf, rows * cols);
      this.cu.cudaStridedF32(up, out.buf, rows, cols, rs, cs, true);
    }
    return out;
  }

  private rope(spec: RopeSpec, seqLen: number) {
    const key = `${JSON.stringify(spec)}:${seqLen}`;
    let r = this.ropeCache.get(key);
    if (!r) {
      const t = ropeTables(spec, seqLen, seqLen);
      const up = (a: Float32Array) => {
        const b = this.cu.cudaAlloc(Math.max(4, a.byteLength), this.device);
        if (a.length > 0) this.cu.cudaUpload(b, a);
        return b;
      };
      r = { cos: up(t.cos), sin: up(t.sin), t };
      this.ropeCache.set(key, r);
    }
    return r;
  }

  private positions(seq: SequenceBatch, b0: number, nb: number): CudaBuffer {
    const p = seq.positions.subarray(b0 * seq.seqLen, (b0 + nb) * seq.seqLen);
    const buf = this.cu.cudaAlloc(Math.max(4, p.byteLength), this.device);
    if (p.length > 0) this.cu.cudaUpload(buf, p);
    return buf;
  }

  private async standardAttention(
    a: AttentionSpec,
    x: DeviceMatrix,
    seq: SequenceBatch,
    b0: number,
    nb: number,
  ): Promise<DeviceMatrix> {
    const rows = x.rows;
    const cu = this.cu;
    const { numHeads: Hq, numKvHeads: Hkv, headDim: D } = a;
    const qRaw = await this.linear(a.q, x);
    const k = await this.linear(a.k, x);
    const v = await this.linear(a.v, x);
    let q = qRaw;
    let gate: DeviceMatrix | null = null;
    if (a.outputGate) {
      q = this.alloc(rows, Hq * D);
      gate = this.alloc(rows, Hq * D);
      cu.cudaStridedF32(qRaw.buf, q.buf, rows * Hq, D, 2 * D, 1);
      cu.cudaStridedF32(cu.cudaView(qRaw.buf, D * 4, qRaw.buf.bytes - D * 4), gate.buf, rows * Hq, D, 2 * D, 1);
      this.free(qRaw);
    }
    if (a.clipQkv !== undefined) for (const t of [q, k, v]) cu.cudaClampF32(t.buf, t.buf, t.rows * t.cols, a.clipQkv);
    if (a.valueScale !== undefined) cu.cudaScaleF32(v.buf, v.buf, v.rows * v.cols, a.valueScale);
    const qk = a.qkNorm;
    const qkNorm = () => {
      if (!qk) return;
      this.norm(qk.q, q, qk.scope === "head" ? rows * Hq : rows, q);
      this.norm(qk.k, k, qk.scope === "head" ? rows * Hkv : rows, k);
    };
    if (qk && !qk.afterRope) qkNorm();
    if (a.rope) {
      const r = this.rope(a.rope, seq.seqLen);
      const pos = this.positions(seq, b0, nb);
      cu.cudaRopeF32(q.buf, r.cos, r.sin, pos, rows, Hq, D, a.rope.rotaryDim, a.rope.interleaved);
      cu.cudaRopeF32(k.buf, r.cos, r.sin, pos, rows, Hkv, D, a.rope.rotaryDim, a.rope.interleaved);
      cu.cudaFree(pos);
    }
    if (qk?.afterRope) qkNorm();
    if (a.qTemperature) {
      const t = a.qTemperature;
      const f = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        const p = seq.positions[b0 * seq.seqLen + r];
        const steps = Math.floor(Math.fround(Math.fround(p + 1) / t.floorScale));
        f[r] = Math.fround(Math.fround(Math.fround(Math.log1p(steps)) * t.attnScale) + 1);
      }
      const fb = this.upload(f, rows, 1);
      cu.cudaScaleRowsF32(q.buf, fb.buf, rows, Hq * D);
      this.free(fb);
    }
    const out = this.alloc(rows, Hq * a.vHeadDim);
    cu.cudaAttentionGemm(
      q.buf,
      k.buf,
      v.buf,
      out.buf,
      {
        batch: nb,
        seqLen: seq.seqLen,
        numHeads: Hq,
        numKvHeads: Hkv,
        headDim: D,
        vHeadDim: a.vHeadDim,
        scale: a.scale,
        causal: true,
        window: a.window ?? 0,
        chunk: a.chunk ?? 0,
        sinks: a.sinks ? this.hostF32(a.sinks, Hq) : undefined,
      },
      this.precision,
      this.scratchBytes,
    );
    this.free(q, k, v);
    if (gate) {
      cu.cudaActivationF32("sigmoid", gate.buf, gate.buf, rows * Hq * D);
      cu.cudaMulF32(out.buf, gate.buf, out.buf, rows * Hq * D);
      this.free(gate);
    }
    const y = await this.linear(a.o, out);
    this.free(out);
    return y;
  }

  private hostF32(name: string, n: number): Float32Array {
    const x = tensorToF32(this.weights.source.tensor(name), name);
    if (x.length !== n)
      throw new ModelWeightError({ tensor: name, message: `tensor '${name}' has ${x.length} elements, expected ${n}` });
    return x;
  }

  /** MLA without a sparse indexer pass: expanded per-head q/k/v, heads laid out [rope | nope] as mla.ts does. */
  private async mlaAttention(
    s: MlaSpec,
    x: DeviceMatrix,
    seq: SequenceBatch,
    b0: number,
    nb: number,
    L: number,
  ): Promise<DeviceMatrix> {
    const cu = this.cu;
    const rows = x.rows;
    const { numHeads: H, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V, kvLoraRank: C } = s;
    const D = N + R;
    const sparse = s.indexer && seq.seqLen > s.indexer.topK ? s.indexer : null;
    let q: DeviceMatrix;
    let qLatent: DeviceMatrix | null = null;
    if (s.qA && s.qB && s.qANorm) {
      qLatent = await this.linear(s.qA, x);
      this.norm(s.qANorm, qLatent, rows, qLatent);
      q = await this.linear(s.qB, qLatent);
    } else if (s.q) q = await this.linear(s.q, x);
    else
      throw new DeviceUnsupportedError({
        modelType: this.spec.modelType,
        message: `layer ${L}: MLA block without q_proj or q_a_proj/q_b_proj`,
      });
    const kva = await this.linear(s.kvA, x); // [rows, C + R]
    const c = this.alloc(rows, C);
    const kRope = this.alloc(rows, R);
    cu.cudaStridedF32(kva.buf, c.buf, rows, C, C + R, 1);
    cu.cudaStridedF32(cu.cudaView(kva.buf, C * 4, kva.buf.bytes - C * 4), kRope.buf, rows, R, C + R, 1);
    this.free(kva);
    this.norm(s.kvANorm, c, rows, c);
    const kvb = await this.linear(s.kvB, c); // [rows, H·(N + V)]
    this.free(c);
    const Q = this.alloc(rows, H * D);
    const K = this.alloc(rows, H * D);
    const Vv = this.alloc(rows, H * V);
    const view = (b: CudaBuffer, off: number) => cu.cudaView(b, off * 4, b.bytes - off * 4);
    // per (row, head): Q = [q_rope | q_nope], K = [k_rope | k_nope], V
    cu.cudaStridedF32(view(q.buf, N), Q.buf, rows * H, R, D, 1, false, D);
    cu.cudaStridedF32(q.buf, view(Q.buf, R), rows * H, N, D, 1, false, D);
    cu.cudaStridedF32(kvb.buf, view(K.buf, R), rows * H, N, N + V, 1, false, D);
    cu.cudaStridedF32(view(kvb.buf, N), Vv.buf, rows * H, V, N + V, 1, false, V);
    this.free(q, kvb);
    const r = this.rope(s.rope, seq.seqLen);
    const pos = this.positions(seq, b0, nb);
    cu.cudaRopeF32(Q.buf, r.cos, r.sin, pos, rows, H, D, R, s.rope.interleaved);
    cu.cudaRopeF32(kRope.buf, r.cos, r.sin, pos, rows, 1, R, R, s.rope.interleaved);
    cu.cudaFree(pos);
    for (let h = 0; h < H; h++) cu.cudaStridedF32(kRope.buf, view(K.buf, h * D), rows, R, R, 1, false, H * D);
    this.free(kRope);
    const out = this.alloc(rows, H * V);
    if (sparse) {
      // DeepSeek-V3.2: each query attends to the top-k keys of the lightning indexer only
      if (!qLatent)
        throw new DeviceUnsupportedError({
          modelType: this.spec.modelType,
          message: `layer ${L}: the DSA indexer reads the q latent: it needs q_lora_rank (q_a_proj)`,
        });
      const T = seq.seqLen;
      const { numHeads: Hi, headDim: Di, topK } = sparse;
      const iq = await this.linear(sparse.wqB, qLatent);
      const ik = await this.linear(sparse.wk, x);
      this.norm(sparse.kNorm, ik, rows, ik);
      const iw = await this.linear(sparse.weightsProj, x);
      const ir = this.rope(sparse.rope, T);
      const ipos = this.positions(seq, b0, nb);
      cu.cudaRopeF32(iq.buf, ir.cos, ir.sin, ipos, rows, Hi, Di, sparse.rope.rotaryDim, false);
      cu.cudaRopeF32(ik.buf, ir.cos, ir.sin, ipos, rows, 1, Di, sparse.rope.rotaryDim, false);
      cu.cudaFree(ipos);
      const scores = this.alloc(rows, T);
      cu.cudaIndexerScoresF32(
        iq.buf,
        ik.buf,
        iw.buf,
        scores.buf,
        nb,
        T,
        Hi,
        Di,
        Math.fround(Di ** -0.5),
        Math.fround(Hi ** -0.5),
      );
      this.free(iq, ik, iw);
      const sel = cu.cudaAlloc(rows * topK * 4, this.device);
      const val = cu.cudaAlloc(rows * topK * 4, this.device);
      // ties to the lower position, as selectKeys; picks past the query (−∞ scores) are skipped
      cu.cudaTopkF32(scores.buf, rows, T, topK, sel, val);
      this.free(scores);
      cu.cudaSparseAttentionF32(Q.buf, K.buf, Vv.buf, out.buf, sel, nb, T, H, D, V, topK, s.scale);
      cu.cudaFree(sel);
      cu.cudaFree(val);
    } else
      cu.cudaAttentionGemm(
        Q.buf,
        K.buf,
        Vv.buf,
        out.buf,
        { batch: nb, seqLen: seq.seqLen, numHeads: H, numKvHeads: H, headDim: D, vHeadDim: V, scale: s.scale },
        this.precision,
        this.scratchBytes,
      );
    this.free(Q, K, Vv, qLatent);
    const y = await this.linear(s.o, out);
    this.free(out);
    return y;
  }

  /**
   * Gated DeltaNet (deltanet.ts's deltaNetBlock) on the device: projections, causal conv + SiLU,
   * per-key-head L2 norm repeated to the value heads, the delta rule as the token recurrence
   * (cudaGatedDeltaRuleRecurrentF32; the CPU sums the chunked form, equal to f32 round-off),
   * per-head RMSNorm × silu(z), out_proj.
   */
  private async deltaNet(s: DeltaNetSpec, x: DeviceMatrix, T: number, B: number): Promise<DeviceMatrix> {
    const cu = this.cu;
    const rows = x.rows;
    const { numKHeads: Hk, numVHeads: Hv, kHeadDim: dk, vHeadDim: dv, convKernel: K } = s;
    const keyDim = Hk * dk;
    const convDim = 2 * keyDim + Hv * dv;
    const r = Hv / Hk;
    const view = (b: CudaBuffer, off: number) => cu.cudaView(b, off * 4, b.bytes - off * 4);
    // dst[:, dOff : dOff + n] = src[:, sOff : sOff + n]
    const cols = (src: DeviceMatrix, sOff: number, dst: DeviceMatrix, dOff: number, n: number) =>
      cu.cudaStridedF32(view(src.buf, sOff), view(dst.buf, dOff), rows, n, src.cols, 1, false, dst.cols);
    let raw: DeviceMatrix;
    let z: DeviceMatrix;
    let b: DeviceMatrix;
    let a: DeviceMatrix;
    const p = s.projections;
    if (p.layout === "split") {
      raw = await this.linear(p.qkv, x);
      z = await this.linear(p.z, x);
      b = await this.linear(p.b, x);
      a = await this.linear(p.a, x);
    } else {
      const per = 2 * dk + 2 * r * dv;
      const qkvz = await this.linear(p.qkvz, x);
      const ba = await this.linear(p.ba, x);
      raw = this.alloc(rows, convDim);
      z = this.alloc(rows, Hv * dv);
      b = this.alloc(rows, Hv);
      a = this.alloc(rows, Hv);
      for (let g = 0; g < Hk; g++) {
        cols(qkvz, g * per, raw, g * dk, dk);
        cols(qkvz, g * per + dk, raw, keyDim + g * dk, dk);
        cols(qkvz, g * per + 2 * dk, raw, 2 * keyDim + g * r * dv, r * dv);
        cols(qkvz, g * per + 2 * dk + r * dv, z, g * r * dv, r * dv);
        cols(ba, g * 2 * r, b, g * r, r);
        cols(ba, g * 2 * r + r, a, g * r, r);
      }
      this.free(qkvz, ba);
    }
    const qkv = this.alloc(rows, convDim);
    cu.cudaCausalConv1dSiluF32(raw.buf, this.weights.f32(s.conv, convDim * K), qkv.buf, B, T, convDim, K);
    this.free(raw);
    const qk = this.alloc(rows, 2 * keyDim);
    cols(qkv, 0, qk, 0, 2 * keyDim);
    cu.cudaL2NormF32(qk.buf, qk.buf, rows * 2 * Hk, dk, 1e-6);
    const q = this.alloc(rows, Hv * dk);
    const k = this.alloc(rows, Hv * dk);
    const v = this.alloc(rows, Hv * dv);
    for (let h = 0; h < Hv; h++) {
      const g = Math.floor(h / r);
      cols(qk, g * dk, q, h * dk, dk);
      cols(qk, keyDim + g * dk, k, h * dk, dk);
    }
    cu.cudaScaleF32(q.buf, q.buf, rows * Hv * dk, dk ** -0.5);
    cols(qkv, 2 * keyDim, v, 0, Hv * dv);
    this.free(qk, qkv);
    cu.cudaActivationF32("sigmoid", b.buf, b.buf, rows * Hv);
    // gate = softplus(a + dt_bias) · −exp(A_log), per value head
    const gate = this.alloc(rows, Hv);
    cu.cudaFillRowsF32(gate.buf, this.weights.f32(s.dtBias, Hv), rows, Hv);
    cu.cudaResidualAddF32(gate.buf, a.buf, gate.buf, rows * Hv);
    cu.cudaActivationF32("softplus", gate.buf, gate.buf, rows * Hv);
    const aLog = this.hostF32(s.aLog, Hv);
    const decay = this.upload(
      Float32Array.from(aLog, (l) => -Math.exp(l)),
      1,
      Hv,
    );
    const tiled = this.alloc(rows, Hv);
    cu.cudaFillRowsF32(tiled.buf, decay.buf, rows, Hv);
    cu.cudaMulF32(gate.buf, tiled.buf, gate.buf, rows * Hv);
    this.free(a, decay, tiled);
    const o = this.alloc(rows, Hv * dv);
    cu.cudaGatedDeltaRuleRecurrentF32(q.buf, k.buf, v.buf, gate.buf, b.buf, o.buf, B, T, Hv, dk, dv);
    this.free(q, k, v, gate, b);
    const nw = s.norm.weight ? this.weights.f32(s.norm.weight, dv) : null;
    cu.cudaRmsNormF32(o.buf, nw, o.buf, rows * Hv, dv, s.norm.eps, false);
    cu.cudaActivationF32("silu", z.buf, z.buf, rows * Hv * dv);
    cu.cudaMulF32(o.buf, z.buf, o.buf, rows * Hv * dv);
    this.free(z);
    const y = await this.linear(s.out, o);
    this.free(o);
    return y;
  }

  // ---------- the engine's calls

  /**
   * Token ids [B·T] → embeddings [B·T, H] on the device: rows gathered on the host (Engine.embed) a
   * group of sequences at a time, each group uploaded into place, so no [B·T, H] host copy exists.
   */
  embed(ids: ArrayLike<number | bigint>, seq: SequenceBatch): DeviceMatrix {
    const { batch: B, seqLen: T } = seq;
    const H = this.spec.hiddenSize;
    if (ids.length !== B * T)
      throw new ModelInputError({ message: `expected ${B * T} token ids (B·T), got ${ids.length}` });
    const m = this.alloc(B * T, H);
    const per = Math.max(1, Math.floor(this.attentionRows / T));
    for (let b0 = 0; b0 < B; b0 += per) {
      const nb = Math.min(per, B - b0);
      const part = Array.from({ length: nb * T }, (_, i) => ids[b0 * T + i]);
      this.cu.cudaUpload(m.buf, this.host.embed(part, this.host.sequences(nb, T)), b0 * T * H * 4);
    }
    return m;
  }

  /**
   * input norm → attention → residual add → post-attention norm, sequences in groups of
   * ⌊attentionRows / T⌋ (the linear hook sees each group's rows in turn). `hidden` is not modified.
   */
  async attention(
    L: number,
    hidden: DeviceMatrix,
    seq: SequenceBatch,
  ): Promise<{ residual: DeviceMatrix; x: DeviceMatrix }> {
    this.weights.tick();
    const spec = this.layer(L);
    const H = this.spec.hiddenSize;
    const T = seq.seqLen;
    const rows = seq.batch * T;
    if (hidden.rows !== rows || hidden.cols !== H)
      throw new ModelInputError({
        message: `layer ${L}: hidden is [${hidden.rows}, ${hidden.cols}], expected [${rows}, ${H}]`,
      });
    const a = spec.attention;
    const residual = this.alloc(rows, H);
    const per = Math.max(1, Math.floor(this.attentionRows / T));
    for (let b0 = 0; b0 < seq.batch; b0 += per) {
      const nb = Math.min(per, seq.batch - b0);
      const h = this.rowsView(hidden, b0 * T, nb * T);
      const normed = this.normed(spec.inputNorm, h);
      const attn =
        a.kind === "mla"
          ? await this.mlaAttention(a, normed, seq, b0, nb, L)
          : a.kind === "gated_deltanet"
            ? await this.deltaNet(a, normed, seq.seqLen, nb)
            : await this.standardAttention(a, normed, seq, b0, nb);
      this.free(normed);
      const rv = this.rowsView(residual, b0 * T, nb * T);
      this.cu.cudaResidualAddF32(h.buf, attn.buf, rv.buf, nb * T * H, this.spec.residualMultiplier ?? 1);
      this.free(attn, h, rv);
    }
    return { residual, x: this.normed(spec.postAttentionNorm, residual) };
  }

  private moeSpec(L: number): MoeSpec {
    const m = this.layer(L).mlp;
    if (m.kind !== "moe") throw new ModelInputError({ message: `layer ${L} is a dense layer, not MoE` });
    return m;
  }

  /**
   * Router logits, scores, top-k and combine weights of MoE layer L, on the device. softmax_topk
   * (sum-renormalised or not) runs on the device; the other rules route on the host with the CPU
   * engine's route() over the downloaded logits, then upload (the same numbers as the CPU path).
   */
  async router(L: number, x: DeviceMatrix): Promise<DeviceRouting> {
    this.weights.tick();
    const m = this.moeSpec(L);
    const E = m.experts.numExperts;
    const rows = x.rows;
    const logits = await this.linear(m.router, x);
    const r = m.routing;
    if (r.kind === "softmax_topk" && (r.normPower === undefined || r.normPower === 1)) {
      const k = r.topK;
      const scores = this.alloc(rows, E);
      this.cu.cudaSoftmaxF32(logits.buf, scores.buf, rows, E);
      const indices = this.cu.cudaAlloc(Math.max(4, rows * k * 4), this.device);
      const weights = this.cu.cudaAlloc(Math.max(4, rows * k * 4), this.device);
      this.cu.cudaTopkF32(scores.buf, rows, E, k, indices, weights);
      if (r.normTopK) this.cu.cudaRenormRowsF32(weights, rows, k);
      return { rows, numExperts: E, topK: k, logits, scores, indices, weights };
    }
    const hostLogits = this.download(logits);
    this.free(logits);
    const bias = "bias" in r && r.bias ? tensorToF32(this.weights.source.tensor(r.bias), r.bias) : null;
    return this.uploadRouting(route(r, hostLogits, rows, E, bias));
  }

  /** Expert e of layer L on the given rows [n, H]; also its down_proj input [n, I]. Both the caller's. */
  async expert(L: number, e: number, x: DeviceMatrix): Promise<{ out: DeviceMatrix; act: DeviceMatrix }> {
    this.weights.tick();
    const m = this.moeSpec(L);
    if (!Number.isInteger(e) || e < 0 || e >= m.experts.numExperts)
      throw new ModelInputError({
        message: `layer ${L}: expert ${e} is out of range (${m.experts.numExperts} experts)`,
      });
    return this.expertForward(m.experts, e, x);
  }

  private async hookedExpert(
    spec: ExpertsSpec,
    e: number,
    weight: string,
    projection: "gate_proj" | "up_proj" | "down_proj",
    x: DeviceMatrix,
  ): Promise<DeviceMatrix | undefined> {
    const site = this.sites?.get(spec);
    return this.hooked(spec, () => ({ weight, layer: site?.layer ?? -1, module: "experts", expert: e, projection }), x);
  }

  private async expertForward(
    spec: ExpertsSpec,
    e: number,
    x: DeviceMatrix,
  ): Promise<{ out: DeviceMatrix; act: DeviceMatrix }> {
    const { hidden: H, intermediate: I, layout, numExperts: E } = spec;
    const n = x.rows;
    if (n === 0) return { out: this.alloc(0, H), act: this.alloc(0, I) };
    if (layout.kind === "per_expert" || layout.kind === "stacked") {
      const names =
        layout.kind === "per_expert"
          ? {
              gate: perExpertName(layout, e, "gate"),
              up: perExpertName(layout, e, "up"),
              down: perExpertName(layout, e, "down"),
            }
          : { gate: layout.gate, up: layout.up, down: layout.down };
      const numel = layout.kind === "per_expert" ? I * H : E * I * H;
      const off = layout.kind === "per_expert" ? 0 : e * I * H;
      const G = this.weights.raw(names.gate, numel);
      const U = this.weights.raw(names.up, numel);
      const Dw = this.weights.raw(names.down, numel);
      const xg = await this.hookedExpert(spec, e, names.gate, "gate_proj", x);
      const xu = await this.hookedExpert(spec, e, names.up, "up_proj", x);
      const g = this.gemm(xg ?? x, G, off, I, true);
      const u = this.gemm(xu ?? x, U, off, I, true);
      this.free(xg, xu);
      const act = this.gatedAct(spec, g.buf, u.buf, n, I);
      this.free(g, u);
      const ad = await this.hookedExpert(spec, e, names.down, "down_proj", act);
      // stacked + downTransposed: the [I, H] slice multiplies act as is
      const out = this.gemm(ad ?? act, Dw, off, H, layout.kind === "per_expert" || !layout.downTransposed);
      this.free(ad);
      return { out, act };
    }
    const GU = this.weights.raw(layout.gateUp, E * 2 * I * H);
    const Dw = this.weights.raw(layout.down, E * H * I);
    const gu = this.alloc(n, 2 * I);
    if (layout.gateUpBias) {
      const b = this.weights.f32(layout.gateUpBias, E * 2 * I);
      this.cu.cudaFillRowsF32(gu.buf, this.cu.cudaView(b, e * 2 * I * 4, 2 * I * 4), n, 2 * I);
    }
    const xgu = await this.hookedExpert(spec, e, layout.gateUp, "gate_proj", x);
    if (n > 0) {
      const bytes = BYTES[GU.dtype];
      this.cu.cudaGemmMixed(
        (xgu ?? x).buf,
        this.cu.cudaView(GU.buf, e * 2 * I * H * bytes, 2 * I * H * bytes),
        gu.buf,
        n,
        2 * I,
        H,
        GU.dtype,
        !layout.transposed,
        null,
        !!layout.gateUpBias,
        this.precision,
      );
    }
    this.free(xgu);
    const halves = layout.split === "halves";
    const up = this.cu.cudaView(gu.buf, (halves ? I : 1) * 4, gu.buf.bytes - (halves ? I : 1) * 4);
    const act = this.gatedAct(spec, gu.buf, up, n, I, 2 * I, halves ? 1 : 2);
    this.free(gu);
    const out = this.alloc(n, H);
    if (layout.downBias) {
      const b = this.weights.f32(layout.downBias, E * H);
      this.cu.cudaFillRowsF32(out.buf, this.cu.cudaView(b, e * H * 4, H * 4), n, H);
    }
    const ad = await this.hookedExpert(spec, e, layout.down, "down_proj", act);
    if (n > 0) {
      const bytes = BYTES[Dw.dtype];
      this.cu.cudaGemmMixed(
        (ad ?? act).buf,
        this.cu.cudaView(Dw.buf, e * H * I * bytes, H * I * bytes),
        out.buf,
        n,
        H,
        I,
        Dw.dtype,
        !layout.transposed,
        null,
        !!layout.downBias,
        this.precision,
      );
    }
    this.free(ad);
    return { out, act };
  }

  /** Rows idx of x into a new [idx.length, cols] matrix (each scaled by scale[i] when given). */
  gatherRows(x: DeviceMatrix, idx: Int32Array, scale?: Float32Array): DeviceMatrix {
    const out = this.alloc(idx.length, x.cols);
    if (idx.length === 0) return out;
    const ib = this.cu.cudaAlloc(idx.byteLength, this.device);
    this.cu.cudaUpload(ib, idx);
    const sb = scale ? this.upload(scale, idx.length, 1) : null;
    this.cu.cudaGatherRowsF32(x.buf, ib, sb?.buf ?? null, out.buf, idx.length, x.cols);
    this.cu.cudaFree(ib);
    this.free(sb);
    return out;
  }

  /** The MoE block's output (routed experts under `routing`, plus the shared expert), [rows, H]. */
  /**
   * The rows each expert receives under a routing, in dispatch()'s order (token order per expert):
   * host `offsets` [E + 1] and `rows` / `weights` per expert (host arrays), plus the same on the
   * device (`deviceRows` i32, `deviceWeights` f32, [total]) for gathers: expert e's slice is
   * [offsets[e], offsets[e + 1]). The caller frees the two device buffers (freeDispatch).
   */
  dispatch(routing: DeviceRouting): DeviceDispatch {
    const k = routing.topK;
    const indices = new Int32Array(routing.rows * k);
    const weights = new Float32Array(routing.rows * k);
    if (indices.length > 0) {
      this.cu.cudaDownload(routing.indices, indices);
      this.cu.cudaDownload(routing.weights, weights);
    }
    const groups = dispatch({
      rows: routing.rows,
      numExperts: routing.numExperts,
      topK: k,
      indices,
      weights,
      logits: new Float32Array(0),
      scores: new Float32Array(0),
    });
    const offsets = new Int32Array(groups.length + 1);
    for (let e = 0; e < groups.length; e++) offsets[e + 1] = offsets[e] + groups[e].rows.length;
    const total = offsets[groups.length];
    const allIdx = new Int32Array(Math.max(1, total));
    const allW = new Float32Array(Math.max(1, total));
    for (let e = 0; e < groups.length; e++) {
      allIdx.set(groups[e].rows, offsets[e]);
      allW.set(groups[e].weights, offsets[e]);
    }
    const deviceRows = this.cu.cudaAlloc(allIdx.byteLength, this.device);
    const deviceWeights = this.cu.cudaAlloc(allW.byteLength, this.device);
    this.cu.cudaUpload(deviceRows, allIdx);
    this.cu.cudaUpload(deviceWeights, allW);
    return { offsets, groups, deviceRows, deviceWeights };
  }

  freeDispatch(d: DeviceDispatch): void {
    this.cu.cudaFree(d.deviceRows);
    this.cu.cudaFree(d.deviceWeights);
  }

  /** Expert e's rows of x under a dispatch (scaled by their routing weights when `scaled`): [n, H]. */
  expertRows(x: DeviceMatrix, d: DeviceDispatch, e: number, scaled = false): DeviceMatrix {
    const n = d.offsets[e + 1] - d.offsets[e];
    const xs = this.alloc(n, x.cols);
    if (n === 0) return xs;
    const iv = this.cu.cudaView(d.deviceRows, d.offsets[e] * 4, n * 4);
    const wv = this.cu.cudaView(d.deviceWeights, d.offsets[e] * 4, n * 4);
    this.cu.cudaGatherRowsF32(x.buf, iv, scaled ? wv : null, xs.buf, n, x.cols);
    return xs;
  }

  /** The MoE block's output (routed experts under `routing`, plus the shared expert), [rows, H]. */
  async moe(L: number, x: DeviceMatrix, routing?: DeviceRouting): Promise<DeviceMatrix> {
    this.weights.tick();
    const m = this.moeSpec(L);
    const H = this.spec.hiddenSize;
    const rows = x.rows;
    const own = routing ? null : await this.router(L, x);
    const d = this.dispatch(routing ?? (own as DeviceRouting));
    if (own) this.freeRouting(own);
    const out = this.alloc(rows, H);
    const zero = this.upload(new Float32Array(H), 1, H);
    this.cu.cudaFillRowsF32(out.buf, zero.buf, rows, H);
    this.free(zero);
    for (let e = 0; e < m.experts.numExperts; e++) {
      const n = d.offsets[e + 1] - d.offsets[e];
      if (n === 0) continue;
      const iv = this.cu.cudaView(d.deviceRows, d.offsets[e] * 4, n * 4);
      const wv = this.cu.cudaView(d.deviceWeights, d.offsets[e] * 4, n * 4);
      const xs = this.alloc(n, H);
      // Llama 4 scales the expert's input by its routing weight and sums the outputs unweighted
      this.cu.cudaGatherRowsF32(x.buf, iv, m.weightScalesInput ? wv : null, xs.buf, n, H);
      const { out: y, act } = await this.expertForward(m.experts, e, xs);
      this.cu.cudaScatterAddRowsF32(out.buf, y.buf, iv, m.weightScalesInput ? null : wv, n, H);
      this.free(xs, y, act);
    }
    this.freeDispatch(d);
    if (m.shared) {
      const { out: ys, act } = await this.denseMlp(m.shared.mlp, x);
      this.free(act);
      if (m.shared.gate) {
        const gl = await this.linear(m.shared.gate, x);
        this.cu.cudaActivationF32("sigmoid", gl.buf, gl.buf, rows);
        this.cu.cudaRowScaleAddF32(out.buf, ys.buf, gl.buf, rows, H);
        this.free(gl);
      } else this.cu.cudaResidualAddF32(out.buf, ys.buf, out.buf, rows * H);
      this.free(ys);
    }
    return out;
  }

  private async denseMlp(spec: DenseMlpSpec, x: DeviceMatrix): Promise<{ out: DeviceMatrix; act: DeviceMatrix }> {
    const g = await this.linear(spec.gate, x);
    const u = await this.linear(spec.up, x);
    const act = this.gatedAct(spec, g.buf, u.buf, x.rows, spec.gate.outFeatures);
    this.free(g, u);
    return { out: await this.linear(spec.down, act), act };
  }

  /** The shared expert of MoE layer L alone (ungated), with its down_proj input; null when it has none. */
  async sharedExpert(L: number, x: DeviceMatrix): Promise<{ out: DeviceMatrix; act: DeviceMatrix } | null> {
    this.weights.tick();
    const m = this.moeSpec(L);
    return m.shared ? this.denseMlp(m.shared.mlp, x) : null;
  }

  /** The dense MLP of a non-MoE layer; also its down_proj input. */
  async mlp(L: number, x: DeviceMatrix): Promise<{ out: DeviceMatrix; act: DeviceMatrix }> {
    this.weights.tick();
    const m = this.layer(L).mlp;
    if (m.kind !== "dense") throw new ModelInputError({ message: `layer ${L} is an MoE layer; use moe()` });
    return this.denseMlp(m, x);
  }

  /** residual + blockOut (× residual multiplier) into a new matrix. */
  finishLayer(residual: DeviceMatrix, blockOut: DeviceMatrix): DeviceMatrix {
    const h = this.alloc(residual.rows, residual.cols);
    this.cu.cudaResidualAddF32(
      residual.buf,
      blockOut.buf,
      h.buf,
      residual.rows * residual.cols,
      this.spec.residualMultiplier ?? 1,
    );
    return h;
  }

  /** A whole layer; `routerOut` receives (host copies of) what transformers reports as router_logits. */
  async runLayer(
    L: number,
    hidden: DeviceMatrix,
    seq: SequenceBatch,
    routerOut?: Float32Array[],
  ): Promise<DeviceMatrix> {
    const { residual, x } = await this.attention(L, hidden, seq);
    const m = this.layer(L).mlp;
    let y: DeviceMatrix;
    if (m.kind === "dense") {
      const r = await this.mlp(L, x);
      this.free(r.act);
      y = r.out;
    } else {
      const routing = await this.router(L, x);
      routerOut?.push(this.download(m.reportedRouterLogits === "scores" ? routing.scores : routing.logits));
      y = await this.moe(L, x, routing);
      this.freeRouting(routing);
    }
    const h = this.finishLayer(residual, y);
    this.free(residual, x, y);
    return h;
  }

  finalNorm(hidden: DeviceMatrix): DeviceMatrix {
    this.weights.tick();
    return this.normed(this.spec.finalNorm, hidden);
  }

  /** lm_head over final-normed rows → [rows, V] (all rows at once: chunk rows for large batches). */
  async logits(normed: DeviceMatrix): Promise<DeviceMatrix> {
    this.weights.tick();
    const y = await this.linear(this.spec.lmHead, normed);
    const s = this.spec.logitsScaling ?? 1;
    if (s !== 1) this.cu.cudaScaleF32(y.buf, y.buf, y.rows * y.cols, s, true);
    return y;
  }

  /** Full forward with host results (the CPU Engine.forward's), for checks against goldens. */
  async forward(
    ids: ArrayLike<number | bigint>,
    batch: number,
    seqLen: number,
    opts: ForwardOptions = {},
  ): Promise<ForwardResult> {
    const seq = this.sequences(batch, seqLen);
    let h = this.embed(ids, seq);
    const hidden: Float32Array[] | undefined = opts.hiddenStates ? [this.download(h)] : undefined;
    const router: Float32Array[] | undefined = opts.routerLogits ? [] : undefined;
    for (let L = 0; L < this.numLayers; L++) {
      const next = await this.runLayer(L, h, seq, router);
      this.free(h);
      h = next;
      if (hidden && L < this.numLayers - 1) hidden.push(this.download(h));
    }
    const normed = this.finalNorm(h);
    this.free(h);
    hidden?.push(this.download(normed));
    const lg = await this.logits(normed);
    this.free(normed);
    const logits = this.download(lg);
    this.free(lg);
    return { logits, ...(hidden ? { hiddenStates: hidden } : {}), ...(router ? { routerLogits: router } : {}) };
  }

  /** Drops the device weight copies and RoPE tables (buffers handed out stay valid). */
  dispose(): void {
    this.weights.invalidate();
    for (const r of this.ropeCache.values()) {
      this.cu.cudaFree(r.cos);
      this.cu.cudaFree(r.sin);
    }
    this.ropeCache.clear();
  }
}
