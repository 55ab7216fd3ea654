import type { Tensor } from "@moeq/tensor";
import type { DequantizedModule, InputQuantization } from "./types.ts";

/** Where a reader gets tensors: an opened checkpoint, or an in-memory map in tests. */
export interface TensorSource {
  names(): string[];
  has(name: string): boolean;
  tensor(name: string): Tensor;
}

export interface ReadContext {
  readonly source: TensorSource;
  /** config.json's quantization_config ({} when absent). */
  readonly quantizationConfig: Readonly<Record<string, unknown>>;
  /** hf_quant_config.json / quantize_config.json when the checkpoint has them. */
  readonly sideConfig?: Readonly<Record<string, unknown>>;
}

export interface QuantizedReader {
  /** Modules whose weight is stored quantized, by original module name. */
  readonly modules: readonly string[];
  dequantize(module: string): DequantizedModule;
  /** True for tensors that belong to a quantized module's storage (not passed through). */
  owns(tensor: string): boolean;
  /** How the module's input is quantized when served; null for weight-only (absent: null for all). */
  inputQuantization?(module: string): InputQuantization | null;
}

export const mapSource = (m: ReadonlyMap<string, Tensor>): TensorSource => ({
  names: () => [...m.keys()],
  has: (n) => m.has(n),
  tensor: (n) => {
    const t = m.get(n);
    if (t === undefined) throw new Error(`no tensor ${n}`);
    return t;
  },
});

export const maybeTensor = (src: TensorSource, name: string): Tensor | undefined =>
  src.has(name) ? src.tensor(name) : undefined;
