// Where the engine gets its weights: a name → Tensor map. The evaluator overlays dequantized
// weights and the calibrator swaps an expert's weights by wrapping a source; the engine never
// knows whether a tensor came from disk.
import { native } from "@moeq/native";
import { type Tensor, toF32 } from "@moeq/tensor";
import type { LinearHookState } from "./blocks/linear-hook.ts";
import { ModelWeightError } from "./errors.ts";

export interface WeightSource {
  has(name: string): boolean;
  /** The tensor (zero-copy where possible); throws ModelWeightError when absent. */
  tensor(name: string): Tensor;
  names(): readonly string[];
}

/**
 * What a presented tensor was decoded from, for a device that decodes the stored codes itself
 * instead of reading `data` (which decodes on the host): set by fp8BlockSource and
 * mxfp4ExpertSource on the tensors they present, read with storedCodes().
 */
export type StoredCodes =
  | {
      readonly kind: "fp8_block";
      /** F8_E4M3 [rows, cols] */
      readonly codes: Tensor;
      readonly scales: Float32Array;
      readonly block: readonly [number, number];
      /** the presented dtype */
      readonly dtype: "BF16" | "F32";
    }
  | {
      /** blocks U8 [E, rows, nb, 16] + scales [E, rows, nb], presented as BF16 [E, nb·32, rows] */
      readonly kind: "mxfp4_transposed";
      readonly blocks: Tensor;
      readonly scales: Tensor;
    };

export const STORED_CODES = Symbol("moeq.storedCodes");

export function storedCodes(t: Tensor): StoredCodes | undefined {
  return (t as Tensor & { [STORED_CODES]?: StoredCodes })[STORED_CODES];
}

/** Anything shaped like @moeq/safetensors' Checkpoint. */
export interface TensorStore {
  names(): readonly string[] | string[];
  has(name: string): boolean;
  tensor(name: string): Tensor;
}

export function storeSource(store: TensorStore, label = "checkpoint"): WeightSource {
  return {
    has: (n) => store.has(n),
    tensor: (n) => {
      if (!store.has(n)) throw new ModelWeightError({ tensor: n, message: `${label}: tensor '${n}' is missing` });
      return store.tensor(n);
    },
    names: () => [...store.names()],
  };
}

/** `overrides` win over `base` (dequantized weights, a swapped expert...). */
export function overlaySource(base: WeightSource, overrides: ReadonlyMap<string, Tensor>): WeightSource {
  return {
    has: (n) => overrides.has(n) || base.has(n),
    tensor: (n) => overrides.get(n) ?? base.tensor(n),
    names: () => [...new Set([...base.names(), ...overrides.keys()])],
  };
}

export function mapSource(tensors: ReadonlyMap<string, Tensor>, label = "tensors"): WeightSource {
  return storeSource(
    { names: () => [...tensors.keys()], has: (n) => tensors.has(n), tensor: (n) => tensors.get(n) as Tensor },
    label,
  );
}

/** f32 copy of any float tensor (bf16 through the native widening kernel). */
export function tensorToF32(t: Tensor, name: string): Float32Array {
  if (t.dtype === "F32" && t.data.byteOffset % 4 === 0)
    return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  if ((t.dtype === "BF16" || t.dtype === "F16") && t.data.byteOffset % 2 === 0) {
    const out = new Float32Array(t.data.byteLength / 2);
    const bits = new Uint16Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 2);
    if (t.dtype === "BF16") native.bf16ToF32(bits, out);
    else native.f16ToF32(bits, out);
    return out;
  }
  try {
    return toF32(t);
  } catch (e) {
    throw new ModelWeightError({
      tensor: name,
      message: `tensor '${name}' (${t.dtype}) cannot be read as f32: ${String(e)}`,
    });
  }
}

/** Index of the first NaN or ±Inf in `x`, or −1 (v − v is 0 for every finite v, NaN otherwise). */
export function firstNonFinite(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (x[i] - x[i] !== 0) return i;
  return -1;
}

/**
 * f32 views of a source's weights, kept up to `budgetBytes` (oldest evicted first) so a small
 * model converts each weight once while a large one streams layer by layer.
 */
export class F32Weights {
  private readonly cache = new Map<string, Float32Array>();
  private bytes = 0;
  /** Set through Engine.setLinearHook; every block reaches it because they all get these weights. */
  linearHook: LinearHookState | undefined = undefined;

  constructor(
    public source: WeightSource,
    readonly budgetBytes = 2 ** 30,
  ) {}

  get(name: string, expectNumel?: number): Float32Array {
    const hit = this.cache.get(name);
    if (hit) return hit;
    const t = this.source.tensor(name);
    const x = tensorToF32(t, name);
    // a NaN or ±Inf weight would surface minutes later as an unreadable schema error on a statistic
    const bad = firstNonFinite(x);
    if (bad >= 0) {
      const cols = t.shape.length > 1 ? x.length / t.shape[0] : x.length;
      throw new ModelWeightError({
        tensor: name,
        message: `tensor '${name}' holds ${x[bad]} at row ${Math.floor(bad / cols)}, column ${bad % cols}: the checkpoint is damaged or was saved from a diverged model`,
      });
    }
    if (expectNumel !== undefined && x.length !== expectNumel)
      throw new ModelWeightError({
        tensor: name,
        message: `tensor '${name}' has ${x.length} elements, the architecture expects ${expectNumel}`,
      });
    if (x.byteLength <= this.budgetBytes) {
      while (this.bytes + x.byteLength > this.budgetBytes && this.cache.size > 0) {
        const [k, v] = this.cache.entries().next().value as [string, Float32Array];
        this.cache.delete(k);
        this.bytes -= v.byteLength;
      }
      this.cache.set(name, x);
      this.bytes += x.byteLength;
    }
    return x;
  }

  /** Drop cached conversions (after the source's tensors changed). */
  invalidate(names?: Iterable<string>): void {
    if (!names) {
      this.cache.clear();
      this.bytes = 0;
      return;
    }
    for (const n of names) {
      const v = this.cache.get(n);
      if (v) {
        this.bytes -= v.byteLength;
        this.cache.delete(n);
      }
    }
  }
}
