import { describe, expect, it } from "vitest";
import { scaleDtypeFor } from "../src/scale-dtype.ts";

describe("scaleDtypeFor: the dtype each target format stores integer scales in", () => {
  it("compressed-tensors follows the weight dtype", () => {
    expect(scaleDtypeFor("compressed-tensors", "BF16")).toBe("bf16");
    expect(scaleDtypeFor("compressed-tensors", "F16")).toBe("f16");
    expect(scaleDtypeFor("compressed-tensors", "F32")).toBe("f32");
    // work items carry the contracts' lower-case dtype names
    expect(scaleDtypeFor("compressed-tensors", "bf16")).toBe("bf16");
    expect(scaleDtypeFor("compressed-tensors", "f16")).toBe("f16");
  });
  it("GPTQ checkpoints store F16 whatever the weight dtype", () => {
    for (const d of ["BF16", "F16", "F32", "bf16"]) {
      expect(scaleDtypeFor("gptq", d)).toBe("f16");
      expect(scaleDtypeFor("gptq-v2", d)).toBe("f16");
    }
  });
});
