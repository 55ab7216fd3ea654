export * from "./errors.ts";
export * from "./roots.ts";
export * from "./segments.ts";
export * from "./services.ts";
export * from "./tensor-store.ts";
export * from "./cuda.ts";
