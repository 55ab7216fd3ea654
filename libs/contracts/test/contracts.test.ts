import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Result } from "effect";
import { describe, expect, it } from "vitest";
import {
  byteLengthOf,
  childTraceparent,
  decode,
  Event,
  encode,
  foldRunState,
  initialRunState,
  packValue,
  parseTraceparent,
  renderSchemas,
  TensorDescriptor,
  WorkItem,
  workId,
} from "../src/index.ts";

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

describe("schemas/ drift", () => {
  it("committed JSON Schemas equal what gen-schemas would write", () => {
    const fresh = renderSchemas();
    const dir = join(repoRoot, "schemas");
    const committed = readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .sort();
    expect(committed).toEqual(Object.keys(fresh).sort());
    for (const [name, text] of Object.entries(fresh)) {
      // Regenerate with `node libs/contracts/dist/gen-schemas.js` when this fails.
      expect(readFileSync(join(dir, name), "utf8"), `schemas/${name} drifted`).toBe(text);
    }
  });

  it("bytes are documented as msgpack bin and patterns survive", () => {
    const ev = JSON.parse(renderSchemas()["event.json"]);
    expect(ev.$defs.RunId.pattern).toBe("^[A-Za-z0-9_-]{1,64}$");
    expect(JSON.stringify(ev)).not.toContain("base64");
    expect(JSON.stringify(ev)).toContain('"x-msgpack":"bin"');
    expect(Object.keys(ev.$defs)).toContain("ExpertQuantizedEvent");
  });
});

describe("msgpack codec", () => {
  it("matches a hand-assembled msgpack byte string (spec: map16, fixstr, fixarray, bin8)", () => {
    const d = { dtype: "u8", shape: [2], loc: { kind: "inline", data: new Uint8Array([7, 9]) } } as const;
    const got = encode(TensorDescriptor, d);
    const s = (t: string) => [0xa0 | t.length, ...Buffer.from(t)];
    // msgpackr writes maps as map16 (0xde + 2-byte count) even when a fixmap would do.
    const want = [
      0xde,
      0x00,
      0x03,
      ...s("dtype"),
      ...s("u8"),
      ...s("shape"),
      0x91,
      0x02,
      ...s("loc"),
      0xde,
      0x00,
      0x02,
      ...s("kind"),
      ...s("inline"),
      ...s("data"),
      0xc4,
      0x02,
      7,
      9,
    ];
    expect([...got]).toEqual(want);
    const back = decode(TensorDescriptor, got, "test");
    expect(Result.isSuccess(back)).toBe(true);
    const v = Result.getOrThrow(back);
    expect(v.loc.kind === "inline" && [...v.loc.data]).toEqual([7, 9]);
  });

  it("decodes the minimal encoding another language's msgpack library writes (fixmap)", () => {
    const s = (t: string) => [0xa0 | t.length, ...Buffer.from(t)];
    const bytes = new Uint8Array([
      0x83,
      ...s("dtype"),
      ...s("bf16"),
      ...s("shape"),
      0x92,
      0x03,
      0xcd,
      0x01,
      0x00,
      ...s("loc"),
      0x84,
      ...s("kind"),
      ...s("shm"),
      ...s("segment"),
      ...s("moeq-r-1.2"),
      ...s("offset"),
      0x00,
      ...s("bytes"),
      0xcd,
      0x06,
      0x00,
    ]);
    const v = Result.getOrThrow(decode(TensorDescriptor, bytes, "fixmap"));
    expect(v).toEqual({
      dtype: "bf16",
      shape: [3, 256],
      loc: { kind: "shm", segment: "moeq-r-1.2", offset: 0, bytes: 1536 },
    });
    expect(byteLengthOf(v.dtype, v.shape)).toBe(1536);
  });

  it("refuses to pack typed arrays other than Uint8Array", () => {
    expect(() => packValue({ x: new Float32Array(2) })).toThrow(/\$\.x is a Float32Array/);
  });

  it("rejects malformed msgpack with MalformedMessage naming the source", () => {
    for (const bad of [
      new Uint8Array([]),
      new Uint8Array([0xc1]),
      new Uint8Array([0x92, 0x01]),
      new Uint8Array([0x01, 0x02]),
    ]) {
      const r = decode(WorkItem, bad, "moeq.r1.work.q");
      expect(Result.isFailure(r)).toBe(true);
      if (Result.isFailure(r)) {
        expect(r.failure._tag).toBe("MalformedMessage");
        expect(r.failure.message).toContain("moeq.r1.work.q");
      }
    }
  });

  it("rejects schema-invalid values with InvalidMessage naming the field", () => {
    const r = decode(WorkItem, packValue({ id: "x", runId: "bad run id!", kind: "k", payload: {} }), "subj");
    expect(Result.isFailure(r) && r.failure._tag).toBe("InvalidMessage");
    expect(Result.isFailure(r) && r.failure.message).toContain("runId");
    const e = decode(
      Event,
      packValue({
        runId: "r",
        seq: 1,
        stage: "s",
        time: "t",
        type: "LayerLoaded",
        payload: { layer: -1, tensors: {} },
      }),
      "evt",
    );
    expect(Result.isFailure(e) && e.failure.message).toContain("layer");
    const unknownType = decode(
      Event,
      packValue({ runId: "r", seq: 1, stage: "s", time: "t", type: "Nope", payload: {} }),
      "evt",
    );
    expect(Result.isFailure(unknownType)).toBe(true);
  });

  it("round-trips every location kind", () => {
    const locs = [
      { kind: "file", path: "/m/a.safetensors", offset: 8, bytes: 6 },
      { kind: "shm", segment: "moeq-run1-12.3", offset: 0, bytes: 6 },
      { kind: "cuda", device: 0, handle: new Uint8Array(64).fill(3), offset: 0, bytes: 6 },
      { kind: "obj", bucket: "b", key: "k", bytes: 6 },
    ] as const;
    for (const loc of locs) {
      const d = { dtype: "f16" as const, shape: [3], loc };
      const v = Result.getOrThrow(decode(TensorDescriptor, encode(TensorDescriptor, d), "t"));
      expect(v.loc.kind).toBe(loc.kind);
    }
  });
});

describe("tensor sizes", () => {
  it("packs sub-byte dtypes two per byte", () => {
    expect(byteLengthOf("e2m1", [3, 5])).toBe(8);
    expect(byteLengthOf("bf16", [3, 5])).toBe(30);
    expect(byteLengthOf("f32", [])).toBe(4);
    expect(byteLengthOf("f32", [0, 7])).toBe(0);
  });
});

describe("trace context", () => {
  it("keeps the trace id across children and rejects malformed headers", () => {
    const root = childTraceparent();
    const child = childTraceparent(root);
    expect(parseTraceparent(child)?.traceId).toBe(parseTraceparent(root)?.traceId);
    expect(parseTraceparent(child)?.spanId).not.toBe(parseTraceparent(root)?.spanId);
    expect(parseTraceparent("00-00000000000000000000000000000000-0000000000000001-01")).toBeUndefined();
    expect(parseTraceparent("garbage")).toBeUndefined();
    // Example from the W3C specification.
    expect(parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")).toEqual({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      sampled: true,
    });
  });
});

describe("run state fold", () => {
  it("counts redone work once", () => {
    const mk = (seq: number, expert: number) =>
      ({
        runId: "r",
        seq,
        stage: "quantizer",
        time: "2026-01-01T00:00:00Z",
        type: "ExpertQuantized",
        payload: { layer: 0, expert, proj: "up_proj", outputs: {}, loss: 0.1, algorithm: "rtn", seconds: 1 },
      }) as const;
    const s = [mk(1, 2), mk(2, 1), mk(3, 2)].reduce(foldRunState, initialRunState);
    expect(s.quantized).toEqual(["0/1/up_proj", "0/2/up_proj"]);
    expect(s.lastSeq).toBe(3);
    expect(workId({ runId: "r", stage: "quantizer", layer: 3, expert: 1, proj: "up_proj" })).toBe(
      "r/3/1/up_proj/quantizer",
    );
  });
});
