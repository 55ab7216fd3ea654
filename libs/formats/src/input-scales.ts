// Activation scales a checkpoint stores for its quantized modules (input_scale,
// input_global_scale): one positive finite number each, else a FormatError naming the tensor.
import { FormatError } from "./errors.ts";
import { maybeTensor, type TensorSource } from "./reader-types.ts";
import { asF32, expectTensor } from "./tensors.ts";

/** The single value of `name` (any of 0-d, [1]); undefined when the tensor is absent. */
export const scalarScale = (format: string, src: TensorSource, name: string): number | undefined => {
  const t = maybeTensor(src, name);
  if (t === undefined) return undefined;
  const v = asF32(expectTensor(format, name, t, ["F32", "BF16", "F16"]));
  if (v.length !== 1) throw new FormatError({ format, reason: `${name} has ${v.length} values, expected one` });
  const s = v[0]!;
  if (!(Number.isFinite(s) && s > 0))
    throw new FormatError({ format, reason: `${name} is ${s}, expected a positive finite scale` });
  return s;
};
