import { describe, expect, it } from "vitest";
import { eventKey } from "../src/events.ts";

describe("eventKey", () => {
  it("identifies per-unit events by their unit and run-level events by type", () => {
    const desc = { dtype: "u8", shape: [1], loc: { kind: "inline", data: new Uint8Array(1) } } as const;
    expect(
      eventKey({
        type: "ExpertQuantized",
        payload: { layer: 3, expert: 17, proj: "down_proj", outputs: {}, loss: 0, algorithm: "rtn", seconds: 1 },
      }),
    ).toBe("ExpertQuantized/3/17/down_proj");
    expect(
      eventKey({
        type: "ExpertCalibrated",
        payload: { layer: 0, expert: 1, proj: "up_proj", hessian: desc, tokens: 1, weightMass: 1, inputAbsmax: 1 },
      }),
    ).toBe("ExpertCalibrated/0/1/up_proj");
    expect(eventKey({ type: "LayerCompleted", payload: { layer: 2, experts: 8, seconds: 1.5 } })).toBe(
      "LayerCompleted/2",
    );
    expect(
      eventKey({ type: "ShardWritten", payload: { file: "model.safetensors", bytes: 1, sha256: "0".repeat(64) } }),
    ).toBe("ShardWritten/model.safetensors");
    expect(
      eventKey({ type: "CheckpointPacked", payload: { dir: "/x", format: "compressed-tensors", shards: 1 } }),
    ).toBe("CheckpointPacked");
    // seconds differ between a run and its redo; the key must not
    expect(eventKey({ type: "LayerCompleted", payload: { layer: 2, experts: 8, seconds: 9 } })).toBe(
      "LayerCompleted/2",
    );
  });
});
