// The CUDA build's kernels against the CPU kernels and the GPTQ oracle (checks in cuda_checks.ts).
// CI is CPU-only: there the file checks that the build says so and that every CUDA route fails
// with a typed error; on a CUDA build (the GPU machine) it runs the real comparisons.
import { describe, expect, it } from "vitest";
import { CudaUnavailable, cudaKernels, deviceKernels, InvalidDevice, native, parseDevice } from "../ts/index.ts";
import * as checks from "./cuda_checks.ts";
import * as opsChecks from "./cuda_ops_checks.ts";
import * as statsChecks from "./cuda_stats_checks.ts";

const cudaEntryPoints = [
  "cudaDeviceCount",
  "cudaAlloc",
  "cudaUpload",
  "cudaDownload",
  "cudaGemmF32",
  "cudaGemmBatchedF32",
  "cudaHessianAccumulate",
  "cudaSoftmaxF32",
  "cudaTopkF32",
  "cudaSwigluF32",
  "cudaRmsNormF32",
  "cudaAttentionF32",
  "cudaLogSoftmaxF32",
  "cudaActivationF32",
  "cudaClampedSwigluF32",
  "cudaLayerNormF32",
  "cudaL2NormF32",
  "cudaRopeF32",
  "cudaBf16ToF32",
  "cudaF16ToF32",
  "cudaDecodeToF32",
  "cudaGemmMixed",
  "cudaCausalConv1dSiluF32",
  "cudaGatedDeltaRuleRecurrentF32",
  "cudaGptqBatched",
  "cudaMoeCalibrate",
  "cudaIpcExport",
  "cudaIpcOpen",
  "cudaIpcEventCreate",
  "cudaIpcEventOpen",
] as const;

describe("--device parsing", () => {
  it("accepts cpu, cuda, cuda:N and rejects anything else with InvalidDevice", () => {
    expect(parseDevice("cpu")).toEqual({ kind: "cpu" });
    expect(parseDevice("cuda")).toEqual({ kind: "cuda", index: 0 });
    expect(parseDevice("CUDA:3")).toEqual({ kind: "cuda", index: 3 });
    for (const bad of ["gpu", "cuda:", "cuda:-1", "cuda:x", "", "cuda:1:2"]) {
      expect(() => parseDevice(bad)).toThrow(InvalidDevice);
      expect(() => parseDevice(bad)).toThrow(/--device: expected cpu, cuda or cuda:N/);
    }
  });

  it("deviceKernels(cpu) are the CPU kernels", async () => {
    const k = deviceKernels({ kind: "cpu" });
    const r = checks.rng(5);
    const x = Float32Array.from({ length: 13 * 7 }, r);
    const h1 = new Float64Array(49);
    const h2 = new Float64Array(49);
    await k.hessianAccumulate(h1, x, 13, 7, null);
    native.hessianAccumulateRef(h2, x, 13, 7, null);
    expect(checks.relErr(h1, h2)).toBeLessThan(1e-12);
  });
});

if (!native.withCuda) {
  describe("CPU build (CI): no CUDA", () => {
    it("withCuda is false and no CUDA entry point is exported", () => {
      expect(native.withCuda).toBe(false);
      const exported = native as unknown as Record<string, unknown>;
      for (const name of cudaEntryPoints) expect(exported[name], name).toBeUndefined();
    });

    it("every CUDA route fails with CudaUnavailable naming the build", () => {
      expect(() => cudaKernels()).toThrow(CudaUnavailable);
      expect(() => cudaKernels()).toThrow(/no CUDA kernels \(rebuild with MOEQ_CMAKE_ARGS=-DWITH_CUDA=ON/);
      expect(() => deviceKernels(parseDevice("cuda:0"))).toThrow(CudaUnavailable);
      try {
        cudaKernels(1);
      } catch (e) {
        expect((e as CudaUnavailable)._tag).toBe("CudaUnavailable");
        expect((e as CudaUnavailable).permanent).toBe(true);
      }
    });
  });
} else {
  describe("CUDA build: GPU kernels against the CPU kernels", () => {
    it("sees a GPU", () => {
      expect(native.cudaDeviceCount?.()).toBeGreaterThan(0);
      expect(() => cudaKernels(999)).toThrow(/cuda:999 is not available/);
    });
    it("GEMM f32 / tf32 / bf16, batched", async () => console.log(await checks.checkGemm(11)), 60_000);
    it("weighted Hessian", async () => console.log(await checks.checkHessian(12)), 60_000);
    it("softmax, top-k, SwiGLU, RMSNorm", async () => console.log(await checks.checkElementwise(13)), 60_000);
    it("attention variants", async () => console.log(await checks.checkAttention(17)), 60_000);
    it(
      "log-softmax, activations, clamped SwiGLU, RMSNorm / LayerNorm / L2 norm variants",
      async () => console.log(await opsChecks.checkRowOps(18)),
      60_000,
    );
    it("RoPE bit for bit with ropeF32", async () => console.log(await opsChecks.checkRope(19)), 60_000);
    it("bf16 / f16 / f8_e4m3 decoding, every bit pattern", async () => console.log(await opsChecks.checkDecode()));
    it("mixed-operand GEMM", async () => console.log(await opsChecks.checkGemmMixed(20)), 60_000);
    it("causal conv1d + SiLU, gated delta rule", async () => console.log(await opsChecks.checkDeltaNet(21)), 60_000);
    it("typed errors for bad input to the forward-pass kernels", async () =>
      console.log(await opsChecks.checkOpsRejections()));
    it("MoE statistics helpers: row gather, absmax, row dots", async () =>
      console.log(await statsChecks.checkMoeStats(22)));
    it("GPTQ reproduces the oracle cases", async () => console.log(await checks.checkGptqOracle()), 60_000);
    it(
      "batched GPTQ matches the CPU kernel per expert",
      async () => console.log(await checks.checkGptqBatched(14)),
      120_000,
    );
    it("soft-weighted MoE layer calibration", async () => console.log(await checks.checkMoeCalibrate(15)), 60_000);
    it("typed errors for bad input", () => console.log(checks.checkRejections()));
    it(
      "two processes share a buffer by IPC handle, ordered by IPC events",
      async () => console.log(await checks.checkIpc()),
      60_000,
    );
    it("deviceKernels(cuda) gives the CPU kernels' results", async () => {
      const k = deviceKernels(parseDevice("cuda:0"));
      const r = checks.rng(16);
      const x = Float32Array.from({ length: 211 * 37 }, r);
      const w = Float32Array.from({ length: 211 }, () => r() + 0.5);
      const h1 = new Float64Array(37 * 37);
      const h2 = new Float64Array(37 * 37);
      await k.hessianAccumulate(h1, x, 211, 37, w);
      native.hessianAccumulateRef(h2, x, 211, 37, w);
      expect(checks.relErr(h1, h2)).toBeLessThan(1e-5);
    });
  });
}
