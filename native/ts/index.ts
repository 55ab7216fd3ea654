// Loads the C++ addon built by cmake-js (native/build/Release) and gives it types.
// Kernel files in native/src add exports; their TypeScript signatures live in ./kernels.ts.

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { NativeKernels } from "./kernels.ts";

export type * from "./kernels.ts";

const here = dirname(fileURLToPath(import.meta.url));
const candidates = [process.env.MOEQ_NATIVE_ADDON, join(here, "..", "build", "Release", "moeq_native.node")].filter(
  (p): p is string => typeof p === "string" && p.length > 0,
);

function load(): NativeKernels {
  const require = createRequire(import.meta.url);
  for (const p of candidates) if (existsSync(p)) return require(p) as NativeKernels;
  throw new Error(
    `moeq native addon not found (looked in ${candidates.join(", ")}); build it with 'npm run build' (turbo runs build:native)`,
  );
}

export const native: NativeKernels = load();
export * from "./device.ts";
