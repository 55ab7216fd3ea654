export {};
export * from "./float.ts";
export * from "./int.ts";
export * from "./rtn.ts";
export * from "./gptq.ts";
