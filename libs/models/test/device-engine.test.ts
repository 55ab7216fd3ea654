// The device engine's CPU-side guarantees (CI has no GPU; its numerics are checked on the device
// by native/bench/gpu/goldens.ts): it names the blocks it cannot run before touching CUDA, and a
// CPU build refuses it with the CUDA-unavailable error instead of running anything.
import { join } from "node:path";
import {
  DeviceEngine,
  DeviceUnsupportedError,
  dequantizeFp8Block,
  deviceUnsupported,
  fp8BlockSource,
  loadModel,
  type ModelSpec,
  mapSource,
  mxfp4ExpertSource,
  storedCodes,
} from "@moeq/models";
import { native } from "@moeq/native";
import type { Tensor } from "@moeq/tensor";
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

  it("FP8-block and MXFP4 sources hand the device their stored codes; `data` still decodes on the host", () => {
    const codes: Tensor = {
      dtype: "F8_E4M3",
      shape: [2, 3],
      data: Uint8Array.from([0x38, 0xb8, 0x40, 0x00, 0x30, 0x48]),
    };
    const scales = Float32Array.from([0.5]);
    const fp8 = fp8BlockSource(
      mapSource(
        new Map<string, Tensor>([
          ["m.weight", codes],
          ["m.weight_scale_inv", { dtype: "F32", shape: [1, 1], data: new Uint8Array(scales.buffer) }],
        ]),
      ),
      { block: [128, 128], dtype: "F32" },
    );
    const t = fp8.tensor("m.weight");
    const c = storedCodes(t);
    expect(c?.kind).toBe("fp8_block");
    if (c?.kind === "fp8_block") {
      expect(c.codes).toBe(codes);
      expect([...c.block]).toEqual([128, 128]);
      expect(c.dtype).toBe("F32");
    }
    expect([...new Float32Array(t.data.slice().buffer)]).toEqual([
      ...dequantizeFp8Block("m.weight", codes, scales, [128, 128]),
    ]);

    const blocks: Tensor = { dtype: "U8", shape: [1, 2, 1, 16], data: new Uint8Array(32).map((_, i) => i * 7) };
    const sc: Tensor = { dtype: "U8", shape: [1, 2, 1], data: Uint8Array.from([127, 126]) };
    const mx = mxfp4ExpertSource(
      mapSource(
        new Map<string, Tensor>([
          ["e.down_proj_blocks", blocks],
          ["e.down_proj_scales", sc],
        ]),
      ),
    );
    const d = mx.tensor("e.down_proj");
    expect(d.shape).toEqual([1, 32, 2]);
    const m = storedCodes(d);
    expect(m?.kind).toBe("mxfp4_transposed");
    expect(d.data.byteLength).toBe(32 * 2 * 2);
    // a bad shape is still refused when the tensor is asked for, before any decode
    const bad = mxfp4ExpertSource(
      mapSource(
        new Map<string, Tensor>([
          ["e.down_proj_blocks", blocks],
          ["e.down_proj_scales", { ...sc, shape: [1, 1, 2] }],
        ]),
      ),
    );
    expect(() => bad.tensor("e.down_proj")).toThrow(/scales must be U8 \[1, 2, 1\]/);
  });
});
