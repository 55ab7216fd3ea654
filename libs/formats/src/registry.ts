import { compressedTensors } from "./compressed-tensors.ts";
import { UnknownFormatError } from "./errors.ts";
import { fp8Block } from "./fp8-block.ts";
import { gptOssMxfp4 } from "./gpt-oss-mxfp4.ts";
import { gptq, gptqV2 } from "./gptq.ts";
import { modelopt } from "./modelopt.ts";
import type { Format } from "./types.ts";

export const formats: readonly Format[] = [compressedTensors, gptq, gptqV2, modelopt, fp8Block, gptOssMxfp4];

export type FormatName = "compressed-tensors" | "gptq" | "gptq-v2" | "modelopt" | "fp8-block" | "gpt-oss-mxfp4";

export const formatNames: readonly FormatName[] = formats.map((f) => f.name as FormatName);

/** The format called `name`; UnknownFormatError (listing the valid names) otherwise. */
export const getFormat = (name: string): Format => {
  const f = formats.find((x) => x.name === name);
  if (!f) throw new UnknownFormatError({ name, valid: formatNames });
  return f;
};
