// The device engine's CPU-side guarantees (CI has no GPU; its numerics are checked on the device
// by native/bench/gpu/goldens.ts): it names the blocks it cannot run before touching CUDA, and a
// CPU build refuses it with the CUDA-unavailable error instead of running anything.
import { join } from "node:path";
import { DeviceEngine, DeviceUnsupportedError, deviceUnsupported, loadModel } from "@moeq/models";
import { native } from "@moeq/native";
import { describe, expect, it } from "vitest";
import { tinyRandom } from "./fixtures.ts";

describe("DeviceEngine", () => {
  it("lists gated DeltaNet layers as unsupported, by layer, and nothing for standard / MLA models", () => {
    const next = loadModel(join(tinyRandom, "qwen3_next"), { validate: false });
    const why = deviceUnsupported(next.spec);
    next.close();
    expect(why.length).toBeGreaterThan(0);
    for (const w of why) expect(w).toMatch(/^layer \d+: gated DeltaNet/);
    for (const name of ["qwen3_moe", "gpt_oss", "dbrx", "deepseek_v3", "llama4_text"]) {
      const m = loadModel(join(tinyRandom, name), { validate: false });
      expect(deviceUnsupported(m.spec), name).toEqual([]);
      m.close();
    }
  });

  it("throws DeviceUnsupportedError naming the model and block before any CUDA call", () => {
    const m = loadModel(join(tinyRandom, "qwen3_5_moe_text"), { validate: false });
    try {
      expect(() => new DeviceEngine(m.spec, m.source)).toThrow(DeviceUnsupportedError);
      expect(() => new DeviceEngine(m.spec, m.source)).toThrow(/qwen3_5_moe_text: layer \d+: gated DeltaNet/);
    } finally {
      m.close();
    }
  });

  it("constructs where CUDA is there, else refuses with CudaUnavailable naming why", () => {
    const m = loadModel(join(tinyRandom, "qwen3_moe"), { validate: false });
    try {
      if (native.withCuda && (native.cudaDeviceCount?.() ?? 0) > 0) {
        const e = new DeviceEngine(m.spec, m.source);
        expect(e.numLayers).toBe(m.spec.layers.length);
        e.dispose();
      } else expect(() => new DeviceEngine(m.spec, m.source)).toThrow(/no CUDA kernels|CUDA device\(s\) visible/);
    } finally {
      m.close();
    }
  });
});
