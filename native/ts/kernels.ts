// TypeScript signatures of the addon's exports, one interface per kernel family (one file each
// under ./kernels/, beside the C++ file that implements it). Matrices are row-major.
// Async variants run on the libuv pool (off the event loop); *Sync run on the caller's thread
// for small inputs; *Ref are the plain scalar references the optimised paths are tested against.
import type { GemmKernels } from "./kernels/gemm.ts";

export type { GemmKernels };

export interface NativeKernels extends GemmKernels {
  readonly withCuda: boolean;
}
