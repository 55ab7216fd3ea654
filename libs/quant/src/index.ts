export {};
export * from "./float.ts";
