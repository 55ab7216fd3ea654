// Public surface of the float schemes.
export * from "./act-quant.ts";
export * from "./float-codecs.ts";
export * from "./float-errors.ts";
export * from "./fp8.ts";
export * from "./mxfp4.ts";
export * from "./nvfp4.ts";
export * from "./scheme.ts";
export * from "./scheme-input-scales.ts";
