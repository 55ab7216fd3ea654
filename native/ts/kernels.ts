// TypeScript signatures of the addon's exports, one interface per kernel family (one file each
// under ./kernels/, beside the C++ file(s) in ../src that implement it). Matrices are row-major.
// Async variants run on the libuv pool (off the event loop); *Sync run on the caller's thread
// for small inputs; *Ref are the plain scalar references the optimised paths are tested against.
import type { AttentionKernels } from "./kernels/attention.ts";
import type { CudaKernels } from "./kernels/cuda.ts";
import type { GemmKernels } from "./kernels/gemm.ts";
import type { IoKernels } from "./kernels/io.ts";
import type { OpsKernels } from "./kernels/ops.ts";
import type { QuantKernels } from "./kernels/quant.ts";
import type { ShmKernels } from "./kernels/shm.ts";

export type { GemmMixedItem, GemmMixedKernels, WeightDtype } from "./kernels/gemm.ts";
export type { GptqNativeResult, GptqScaleDtype } from "./kernels/quant.ts";
export type { AttentionKernels, CudaKernels, GemmKernels, IoKernels, OpsKernels, QuantKernels, ShmKernels };

/** The CUDA entry points exist only when withCuda is true (use cudaKernels() from ./device.ts). */
export interface NativeKernels
  extends GemmKernels,
    IoKernels,
    ShmKernels,
    OpsKernels,
    AttentionKernels,
    QuantKernels,
    Partial<CudaKernels> {
  readonly withCuda: boolean;
}
export type { AttentionOptions } from "./kernels/attention.ts";
export type {
  CudaBuffer,
  CudaDeviceInfo,
  CudaGptqResult,
  CudaIpcEvent,
  CudaIpcExport,
  CudaMoeCalibration,
  CudaPrecision,
} from "./kernels/cuda.ts";
export type { ActivationKind } from "./kernels/ops.ts";
