// `--scheme` names and which `--format` can store each one, checked with the other options so a
// combination no format can write fails before any work starts (not in the packer, hours later).

export const SCHEMES = ["w4a16", "w8a16", "fp8", "fp8-channel", "fp8-block", "w8a8-fp8", "nvfp4", "mxfp4"] as const;
export type SchemeName = (typeof SCHEMES)[number];

export const FORMATS = ["compressed-tensors", "gptq", "gptq-v2", "modelopt", "fp8-block", "gpt-oss-mxfp4"] as const;
export type FormatOption = (typeof FORMATS)[number];

export interface SchemeInfo {
  /** "int": RTN/GPTQ with --bits/--group-size; otherwise libs/quant's float scheme of this name */
  readonly family: "int" | "fp8" | "nvfp4" | "mxfp4";
  readonly bits?: 4 | 8;
  readonly fp8Strategy?: "tensor" | "channel" | "block";
  /** static input scales from the calibrator's input absmax (needs the calibration forward pass) */
  readonly staticInputs: boolean;
  readonly formats: readonly FormatOption[];
}

export const SCHEME_INFO: Readonly<Record<SchemeName, SchemeInfo>> = {
  w4a16: { family: "int", bits: 4, staticInputs: false, formats: ["compressed-tensors", "gptq", "gptq-v2"] },
  w8a16: { family: "int", bits: 8, staticInputs: false, formats: ["compressed-tensors", "gptq", "gptq-v2"] },
  fp8: { family: "fp8", fp8Strategy: "tensor", staticInputs: false, formats: ["compressed-tensors"] },
  "fp8-channel": { family: "fp8", fp8Strategy: "channel", staticInputs: false, formats: ["compressed-tensors"] },
  "fp8-block": {
    family: "fp8",
    fp8Strategy: "block",
    staticInputs: false,
    formats: ["compressed-tensors", "fp8-block"],
  },
  "w8a8-fp8": { family: "fp8", fp8Strategy: "tensor", staticInputs: true, formats: ["compressed-tensors", "modelopt"] },
  nvfp4: { family: "nvfp4", staticInputs: true, formats: ["compressed-tensors", "modelopt"] },
  mxfp4: { family: "mxfp4", staticInputs: false, formats: ["compressed-tensors", "gpt-oss-mxfp4"] },
};

export const isFloatScheme = (s: string): boolean => s in SCHEME_INFO && SCHEME_INFO[s as SchemeName].family !== "int";

/** Float schemes quantize whole modules (experts extracted from fused tensors are whole modules
 *  under their per-expert names); a row slice of a fused module (DBRX's q/k/v inside Wqkv) would
 *  need scales shared across its slices, which the quantizer does not compute. */
export const floatSchemeCanPack = (t: {
  readonly role: { readonly rowSlice?: unknown };
  readonly packed: { readonly rowOffset: number };
}): boolean => !t.role.rowSlice && t.packed.rowOffset === 0;
