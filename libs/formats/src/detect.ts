// Which format a checkpoint is in, from config.json's quantization_config and the side files
// other producers write (hf_quant_config.json, quantize_config.json).
import { readCompressedTensors } from "./compressed-tensors.ts";
import { FormatError } from "./errors.ts";
import { readFp8Block } from "./fp8-block.ts";
import { readGptOssMxfp4 } from "./gpt-oss-mxfp4.ts";
import { readGptq } from "./gptq.ts";
import { readModelopt } from "./modelopt.ts";
import type { QuantizedReader, ReadContext } from "./reader-types.ts";
import type { FormatName } from "./registry.ts";

export type DetectedFormat = FormatName | "unquantized";

export interface SideConfigs {
  readonly hfQuantConfig?: Readonly<Record<string, unknown>>;
  readonly quantizeConfig?: Readonly<Record<string, unknown>>;
}

export const detectFormat = (config: Readonly<Record<string, unknown>>, side: SideConfigs = {}): DetectedFormat => {
  const qc = config.quantization_config as Record<string, unknown> | undefined;
  const method = qc?.quant_method;
  if (method === undefined) {
    if (side.hfQuantConfig) return "modelopt";
    if (side.quantizeConfig) return side.quantizeConfig.checkpoint_format === "gptq_v2" ? "gptq-v2" : "gptq";
    return "unquantized";
  }
  switch (method) {
    case "compressed-tensors":
      return "compressed-tensors";
    case "gptq":
      return (qc?.checkpoint_format ?? side.quantizeConfig?.checkpoint_format) === "gptq_v2" ? "gptq-v2" : "gptq";
    case "modelopt":
    case "modelopt_fp4":
      return "modelopt";
    case "fp8":
      return "fp8-block";
    case "mxfp4":
      return "gpt-oss-mxfp4";
    default:
      throw new FormatError({
        format: String(method),
        reason: `config.json quantization_config.quant_method "${String(method)}" is not a format moeq reads`,
      });
  }
};

const NONE: QuantizedReader = {
  modules: [],
  owns: () => false,
  dequantize: (m) => {
    throw new FormatError({ format: "unquantized", reason: `module "${m}" is not quantized in this checkpoint` });
  },
};

export const readerFor = (format: DetectedFormat, ctx: ReadContext): QuantizedReader => {
  switch (format) {
    case "compressed-tensors":
      return readCompressedTensors(ctx);
    case "gptq":
    case "gptq-v2":
      return readGptq(ctx);
    case "modelopt":
      return readModelopt(ctx);
    case "fp8-block":
      return readFp8Block(ctx);
    case "gpt-oss-mxfp4":
      return readGptOssMxfp4(ctx);
    case "unquantized":
      return NONE;
  }
};
