// Where a stage runs its heavy kernels: `--device cpu|cuda[:N]`. parseDevice validates the option;
// deviceKernels(d) gives hessianAccumulate / gptqQuantize with the CPU kernels' exact signatures
// and result shapes, so a stage swaps devices without other changes. On CUDA the inputs are
// uploaded, the GPU kernels run (Hessians in f32 GEMMs, GPTQ in f64 as on the CPU) and results
// come back to host memory; GPU-resident pipelines use cudaKernels() directly.

import { native } from "./index.ts";
import type { CudaKernels } from "./kernels/cuda.ts";
import type { GptqNativeResult, GptqScaleDtype, QuantKernels } from "./kernels/quant.ts";

export type DeviceSpec = { readonly kind: "cpu" } | { readonly kind: "cuda"; readonly index: number };

/** A --device value that is not cpu, cuda or cuda:N. */
// (no parameter properties: the GPU machine runs these files with Node's type stripping)
export class InvalidDevice extends Error {
  readonly _tag = "InvalidDevice";
  readonly permanent = true;
  readonly value: string;
  constructor(value: string) {
    super(`--device: expected cpu, cuda or cuda:N (N a device index), got "${value}"`);
    this.name = "InvalidDevice";
    this.value = value;
  }
}

/** CUDA asked for on a build without it, or a device index that is not visible. */
export class CudaUnavailable extends Error {
  readonly _tag = "CudaUnavailable";
  readonly permanent = true;
  constructor(message: string) {
    super(message);
    this.name = "CudaUnavailable";
  }
}

export function parseDevice(value: string): DeviceSpec {
  const v = value.trim().toLowerCase();
  if (v === "cpu") return { kind: "cpu" };
  if (v === "cuda") return { kind: "cuda", index: 0 };
  const m = /^cuda:(\d{1,3})$/.exec(v);
  if (m) return { kind: "cuda", index: Number(m[1]) };
  throw new InvalidDevice(value);
}

export function formatDevice(d: DeviceSpec): string {
  return d.kind === "cpu" ? "cpu" : `cuda:${d.index}`;
}

/** The CUDA entry points, or CudaUnavailable naming why not (CPU build, no such device). */
export function cudaKernels(device = 0): CudaKernels {
  if (!native.withCuda || typeof native.cudaDeviceCount !== "function")
    throw new CudaUnavailable(
      "this build of @moeq/native has no CUDA kernels (rebuild with MOEQ_CMAKE_ARGS=-DWITH_CUDA=ON on a machine with the CUDA toolkit)",
    );
  const count = native.cudaDeviceCount();
  if (device < 0 || device >= count)
    throw new CudaUnavailable(`cuda:${device} is not available: ${count} CUDA device(s) visible`);
  return native as unknown as CudaKernels;
}

export type DeviceKernels = Pick<QuantKernels, "hessianAccumulate" | "gptqQuantize">;

export function deviceKernels(d: DeviceSpec): DeviceKernels {
  if (d.kind === "cpu") return { hessianAccumulate: native.hessianAccumulate, gptqQuantize: native.gptqQuantize };
  const cu = cudaKernels(d.index);
  return {
    hessianAccumulate: (h, x, tokens, cols, w) => cudaHessian(cu, d.index, h, x, tokens, cols, w ?? null),
    gptqQuantize: (w, rows, cols, h, bits, groupSize, symmetric, actOrder, damp, blockSize, scaleDtype) =>
      cudaGptqOne(cu, d.index, w, rows, cols, h, bits, groupSize, symmetric, actOrder, damp, blockSize, scaleDtype),
  };
}

const asF32 = (a: Float32Array | Float64Array): Float32Array => (a instanceof Float32Array ? a : Float32Array.from(a));

async function cudaHessian(
  cu: CudaKernels,
  device: number,
  h: Float32Array | Float64Array,
  x: Float32Array,
  tokens: number,
  cols: number,
  w: Float32Array | null,
): Promise<void> {
  if (h.length < cols * cols || x.length < tokens * cols || (w && w.length < tokens))
    throw new RangeError(
      `hessianAccumulate (cuda): h, x or w is smaller than ${cols}×${cols}, ${tokens}×${cols}, ${tokens}`,
    );
  const dh = cu.cudaAlloc(cols * cols * 4, device);
  const dx = cu.cudaAlloc(tokens * cols * 4, device);
  const dw = w ? cu.cudaAlloc(tokens * 4, device) : null;
  try {
    cu.cudaUpload(dh, new Float32Array(cols * cols));
    cu.cudaUpload(dx, x.subarray(0, tokens * cols));
    if (dw && w) cu.cudaUpload(dw, w.subarray(0, tokens));
    await cu.cudaHessianAccumulate(dh, dx, tokens, cols, dw, "f32");
    const sum = new Float32Array(cols * cols);
    cu.cudaDownload(dh, sum);
    for (let i = 0; i < cols * cols; i++) h[i] += sum[i];
  } finally {
    for (const b of [dh, dx, dw]) if (b) cu.cudaFree(b);
  }
}

async function cudaGptqOne(
  cu: CudaKernels,
  device: number,
  w: Float32Array,
  rows: number,
  cols: number,
  h: Float32Array | Float64Array,
  bits: number,
  groupSize: number,
  symmetric: boolean,
  actOrder: boolean,
  damp: number,
  blockSize: number,
  scaleDtype: GptqScaleDtype | undefined,
): Promise<GptqNativeResult> {
  if (w.length < rows * cols || h.length < cols * cols)
    throw new RangeError(`gptqQuantize (cuda): w or h is smaller than ${rows}×${cols}, ${cols}×${cols}`);
  for (let i = 0; i < rows * cols; i++)
    if (!Number.isFinite(w[i])) throw new RangeError(`gptq: w[${Math.floor(i / cols)},${i % cols}] is not finite`);
  for (let i = 0; i < cols * cols; i++)
    if (!Number.isFinite(h[i])) throw new RangeError(`gptq: h[${Math.floor(i / cols)},${i % cols}] is not finite`);
  const dw = cu.cudaAlloc(rows * cols * 4, device);
  const dh = cu.cudaAlloc(cols * cols * 4, device);
  try {
    cu.cudaUpload(dw, w.subarray(0, rows * cols));
    cu.cudaUpload(dh, asF32(h).subarray(0, cols * cols));
    const r = await cu.cudaGptqBatched(
      dw,
      dh,
      1,
      rows,
      cols,
      bits,
      groupSize,
      symmetric,
      actOrder,
      damp,
      blockSize,
      scaleDtype,
    );
    const nG = r.scales.bytes / 4 / rows;
    const out: GptqNativeResult = {
      codes: new Uint8Array(rows * cols),
      scales: new Float32Array(rows * nG),
      zeros: new Int32Array(rows * nG),
      gIdx: r.gIdx,
      perm: r.perm,
      dequant: new Float32Array(rows * cols),
      loss: r.loss[0],
    };
    cu.cudaDownload(r.codes, out.codes);
    cu.cudaDownload(r.scales, out.scales);
    cu.cudaDownload(r.zeros, out.zeros);
    cu.cudaDownload(r.dequant, out.dequant);
    for (const b of [r.codes, r.scales, r.zeros, r.dequant]) cu.cudaFree(b);
    return out;
  } finally {
    cu.cudaFree(dw);
    cu.cudaFree(dh);
  }
}
