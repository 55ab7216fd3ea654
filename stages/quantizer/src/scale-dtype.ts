// The dtype the target checkpoint stores integer scales in, so the quantizer rounds to it up front
// and what serving engines decode is what we quantized and evaluated: compressed-tensors keeps
// weight_scale in the weight's own float dtype (bf16 for bf16 checkpoints), GPTQ checkpoints keep
// `scales` as F16 (their kernels compute in f16).
import type { ScaleDtype } from "@moeq/quant";

/** weightDtype in either spelling: the contracts' ("bf16") or safetensors' ("BF16"). */
export function scaleDtypeFor(format: string, weightDtype: string): ScaleDtype {
  if (format === "gptq" || format === "gptq-v2") return "f16";
  const d = weightDtype.toLowerCase();
  if (format === "compressed-tensors") return d === "bf16" ? "bf16" : d === "f16" ? "f16" : "f32";
  return "f32";
}
