export * from "./convert.ts";
export * from "./dtype.ts";
export * from "./floatbits.ts";
export * from "./pack.ts";
export * from "./tensor.ts";
