// The device engine's CPU-side guarantees (CI has no GPU; its numerics are checked on the device
// by native/bench/gpu/goldens.ts): it names the blocks it cannot run before touching CUDA, and a
// CPU build refuses it with the CUDA-unavailable error instead of running anything.
import { join } from "node:path";
import { DeviceEngine, DeviceUnsupportedError, deviceUnsupported, loadModel, type ModelSpec } from "@moeq/models";
import { native } from "@moeq/native";
import { describe, expect, it } from "vitest";
import { fixtureDirs, tinyRandom } from "./fixtures.ts";

/** qwen3_next with its DeltaNet head dims raised past what the device recurrence holds (256). */
function wideDeltaNet(spec: ModelSpec): ModelSpec {
  return {
    ...spec,
    layers: spec.layers.map((L) =>
      L.attention.kind === "gated_deltanet" ? { ...L, attention: { ...L.attention, kHeadDim: 512 } } : L,
    ),
  };
}

describe("DeviceEngine", () => {
  it("supports the architecture of every tiny-random fixture", () => {
    for (const f of fixtureDirs()) {
      const m = loadModel(f.dir, { validate: false });
      expect(deviceUnsupported(m.spec), f.name).toEqual([]);
      m.close();
    }
  });

  it("throws DeviceUnsupportedError naming the model and layers before any CUDA call", () => {
    const m = loadModel(join(tinyRandom, "qwen3_next"), { validate: false });
    try {
      const spec = wideDeltaNet(m.spec);
      const why = deviceUnsupported(spec);
      expect(why.length).toBeGreaterThan(0);
      for (const w of why) expect(w).toMatch(/^layer \d+: gated DeltaNet with head dims over 256/);
      expect(() => new DeviceEngine(spec, m.source)).toThrow(DeviceUnsupportedError);
      expect(() => new DeviceEngine(spec, m.source)).toThrow(/qwen3_next: layer \d+: gated DeltaNet/);
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
