import { describe, expect, it } from "vitest";
import { DEFAULT_OPTIONS, resolveOptions } from "../src/options.ts";

describe("resolveOptions", () => {
  it("fills the documented defaults", () => {
    const o = resolveOptions({});
    expect(o).toEqual(DEFAULT_OPTIONS);
    expect(o.calib).toBe("brown:128x256");
    expect(o.eval).toBe("brown:64x256");
    expect([o.bits, o.groupSize, o.symmetric, o.targets]).toEqual([4, 32, true, "experts"]);
  });

  it("keeps given values and ignores undefined ones", () => {
    const o = resolveOptions({ algorithm: "rtn", calib: undefined, groupSize: -1, eval: "held.jsonl:8x512" });
    expect([o.algorithm, o.calib, o.groupSize, o.eval]).toEqual(["rtn", "brown:128x256", -1, "held.jsonl:8x512"]);
  });

  it("accepts the default policy by its alias and topup:N; the default is topup", () => {
    expect(DEFAULT_OPTIONS.policy).toBe("topup");
    expect(resolveOptions({ policy: "default" }).policy).toBe("default");
    expect(resolveOptions({ policy: "topup:1024" }).policy).toBe("topup:1024");
  });

  it.each([
    [{ policy: "topup:0" }, "policy"],
    [{ bits: 3 }, "bits"],
    [{ bits: 4.5 }, "bits"],
    [{ groupSize: 0 }, "groupSize"],
    [{ groupSize: -2 }, "groupSize"],
    [{ algorithm: "awq" }, "algorithm"],
    [{ policy: "softer" }, "policy"],
    [{ policy: "mix:1.5" }, "policy"],
    [{ policy: "fill:0" }, "policy"],
    [{ policy: "external:" }, "policy"],
    [{ zeroTokenFallback: "none" }, "zeroTokenFallback"],
    [{ minExpertTokens: -1 }, "minExpertTokens"],
    [{ calib: "brown:12" }, "calib"],
    [{ eval: "data.csv" }, "eval"],
    [{ targets: "everything" }, "targets"],
    [{ propagate: "both" }, "propagate"],
    [{ damp: -0.1 }, "damp"],
    [{ symmetric: "yes" }, "symmetric"],
    [{ colour: "red" }, "colour"],
  ])("rejects %j naming the field", (partial, field) => {
    try {
      resolveOptions(partial as never);
      expect.unreachable();
    } catch (e) {
      expect((e as { _tag: string })._tag).toBe("OptionsError");
      expect((e as { field: string }).field).toBe(field);
      expect((e as Error).message).toContain(field);
    }
  });
});
