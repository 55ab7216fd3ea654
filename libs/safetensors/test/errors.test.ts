import { mkdirSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  createCheckpointWriter,
  openCheckpoint,
  openSafetensors,
  parseSafetensorsBytes,
  SafetensorsError,
} from "../src/index.ts";
import { rawFile, tempDir } from "./helpers.ts";

function fails(f: () => unknown): SafetensorsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return e as SafetensorsError;
  }
  throw new Error("expected a SafetensorsError");
}

const T = (name: string, dtype: string, shape: number[], b: number, e: number) =>
  `"${name}":{"dtype":"${dtype}","shape":[${shape}],"data_offsets":[${b},${e}]}`;

describe("malformed files give a typed error naming the file and the tensor", () => {
  const tmp = tempDir("err");
  afterAll(() => tmp[Symbol.dispose]());
  const file = (name: string, bytes: Uint8Array) => {
    const p = join(tmp.dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const good = rawFile(`{${T("a", "F32", [2], 0, 8)},${T("b", "I8", [3], 8, 11)}}`, 11);

  it("accepts the well-formed control case", () => {
    const c = openSafetensors(file("good.safetensors", good));
    expect(c.names().sort()).toEqual(["a", "b"]);
    expect(c.entry("b").dataOffset).toBe(good.length - 3);
    c.close();
  });

  const cases: Array<[string, Uint8Array, RegExp, string | undefined]> = [
    ["empty file", new Uint8Array(0), /truncated: 0 bytes/, undefined],
    ["truncated length prefix", new Uint8Array(5), /truncated: 5 bytes/, undefined],
    ["truncated data", good.subarray(0, good.length - 2), /truncated/, "b"],
    ["trailing bytes", rawFile(`{${T("a", "F32", [2], 0, 8)}}`, 9), /1 bytes after the last tensor/, undefined],
    [
      "header longer than the file",
      (() => {
        const g = new Uint8Array(good);
        new DataView(g.buffer).setBigUint64(0, 100000n, true);
        return g;
      })(),
      /header length 100000 is longer than the file/,
      undefined,
    ],
    [
      "header over 100 MB",
      (() => {
        const g = new Uint8Array(good);
        new DataView(g.buffer).setBigUint64(0, 100_000_001n, true);
        return g;
      })(),
      /exceeds the 100000000-byte limit/,
      undefined,
    ],
    [
      "u64 max header length",
      (() => {
        const g = new Uint8Array(good);
        new DataView(g.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
        return g;
      })(),
      /exceeds/,
      undefined,
    ],
    ["overlapping offsets", rawFile(`{${T("a", "F32", [2], 0, 8)},${T("b", "I8", [3], 6, 9)}}`, 9), /overlaps/, "b"],
    ["hole between tensors", rawFile(`{${T("a", "F32", [2], 0, 8)},${T("b", "I8", [3], 9, 12)}}`, 12), /hole/, "b"],
    ["hole at the start", rawFile(`{${T("a", "F32", [2], 4, 12)}}`, 12), /hole/, "a"],
    [
      "end before begin",
      rawFile(`{${T("a", "I8", [0], 0, 0)},${T("b", "I8", [0], 4, 0)}}`, 0),
      /end before begin|hole/,
      "b",
    ],
    [
      "size/shape mismatch",
      rawFile(`{${T("a", "F32", [3], 0, 8)}}`, 8),
      /size mismatch: F32 \[3\] needs 12 bytes/,
      "a",
    ],
    ["unknown dtype", rawFile(`{${T("a", "F33", [2], 0, 8)}}`, 8), /unknown dtype "F33"/, "a"],
    ["unsupported dtype", rawFile(`{${T("a", "F4", [2], 0, 1)}}`, 1), /unsupported dtype "F4"/, "a"],
    ["negative dim", rawFile(`{${T("a", "F32", [-2], 0, 8)}}`, 8), /shape\[0\] must be a non-negative integer/, "a"],
    ["float offset", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}`, 8), /data_offsets\[1\]/, "a"],
    ["three offsets", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, 8), /\[begin, end\]/, "a"],
    ["missing dtype", rawFile(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, 8), /dtype/, "a"],
    ["shape overflow", rawFile(`{${T("a", "F32", [2 ** 30, 2 ** 30, 2 ** 30], 0, 8)}}`, 8), /overflows/, "a"],
    [
      "invalid UTF-8",
      rawFile('{"\xff":1}'.replace("\xff", "X"), 0).map((b) => (b === 0x58 ? 0xff : b)),
      /not valid UTF-8/,
      undefined,
    ],
    ["invalid JSON", rawFile(`{${T("a", "F32", [2], 0, 8)}`, 8), /not valid JSON/, undefined],
    ["not starting with {", rawFile(` {${T("a", "F32", [2], 0, 8)}}`, 8), /does not start with '\{'/, undefined],
    [
      "lone surrogate escape",
      rawFile(`{"\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0),
      /surrogate/,
      undefined,
    ],
    [
      "tensor named twice",
      rawFile(`{${T("a", "F32", [2], 0, 8)},${T("a", "F32", [2], 8, 16)}}`, 16),
      /named twice/,
      "a",
    ],
    [
      "metadata not strings",
      rawFile(`{"__metadata__":{"k":1},${T("a", "F32", [2], 0, 8)}}`, 8),
      /__metadata__ "k" is not a string/,
      undefined,
    ],
    [
      "deep nesting",
      rawFile(`{"__metadata__":${"[".repeat(5000)}${"]".repeat(5000)}}`, 0),
      /recursion limit/,
      undefined,
    ],
  ];
  it.each(cases)("%s", (label, bytes, reason, tensor) => {
    const p = file(`${label.replace(/\W+/g, "_")}.safetensors`, bytes);
    const e = fails(() => openSafetensors(p));
    expect(e.file).toBe(p);
    expect(e.tensor).toBe(tensor);
    expect(e.reason).toMatch(reason);
    expect(e.message).toContain(p);
    if (tensor) expect(e.message).toContain(`"${tensor}"`);
    // the in-memory parser agrees
    expect(fails(() => parseSafetensorsBytes(bytes, p)).reason).toBe(e.reason);
  });

  it("a missing file", () => {
    const e = fails(() => openSafetensors(join(tmp.dir, "nope.safetensors")));
    expect(e.reason).toMatch(/cannot open/);
  });

  it("a shard named in the index is missing", () => {
    const out = join(tmp.dir, "sharded");
    const w = createCheckpointWriter(
      out,
      [
        { name: "x", dtype: "U8", shape: [4] },
        { name: "y", dtype: "U8", shape: [4] },
      ],
      { maxShardBytes: 4 },
    );
    w.write("x", new Uint8Array(4));
    w.write("y", new Uint8Array(4));
    w.finish();
    writeFileSync(
      join(out, "model.safetensors.index.json"),
      JSON.stringify({
        metadata: {},
        weight_map: { x: "model-00001-of-00002.safetensors", y: "model-00009-of-00009.safetensors" },
      }),
    );
    const e = fails(() => openCheckpoint(out));
    expect(e.file).toBe(join(out, "model-00009-of-00009.safetensors"));
    expect(e.tensor).toBe("y");
    expect(e.reason).toMatch(/missing/);
    writeFileSync(
      join(out, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { x: "model-00002-of-00002.safetensors" } }),
    );
    expect(fails(() => openCheckpoint(out)).reason).toMatch(/lacks it/);
    writeFileSync(
      join(out, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { x: "../escape.safetensors" } }),
    );
    expect(fails(() => openCheckpoint(out)).reason).toMatch(/outside/);
    writeFileSync(join(out, "model.safetensors.index.json"), "{not json");
    expect(fails(() => openCheckpoint(out)).reason).toMatch(/cannot read index/);
  });

  it("a tensor present in two shards", () => {
    const dir = join(tmp.dir, "dup");
    mkdirSync(dir);
    writeFileSync(join(dir, "a.safetensors"), rawFile(`{${T("w", "U8", [1], 0, 1)}}`, 1));
    writeFileSync(join(dir, "b.safetensors"), rawFile(`{${T("w", "U8", [1], 0, 1)}}`, 1));
    const e = fails(() => openCheckpoint(dir));
    expect(e.tensor).toBe("w");
    expect(e.reason).toMatch(/named twice.*a\.safetensors/);
  });

  it("a shard deleted or truncated after opening fails on first touch, not with a crash", () => {
    const p = file("vanish.safetensors", good);
    const c = openSafetensors(p);
    unlinkSync(p);
    expect(fails(() => c.tensor("a")).reason).toMatch(/cannot open/);
    const q = file("shrink.safetensors", good);
    const d = openSafetensors(q);
    truncateSync(q, 10);
    expect(fails(() => d.tensor("a")).reason).toMatch(/truncated after it was opened/);
    d.close();
  });

  it("an unwritable output directory", () => {
    const blocker = file("blocker", new Uint8Array(1));
    const e = fails(() => createCheckpointWriter(join(blocker, "out"), [{ name: "x", dtype: "U8", shape: [1] }]));
    expect(e.reason).toMatch(/cannot create/);
  });

  it("an unknown tensor name", () => {
    const c = openSafetensors(file("good2.safetensors", good));
    expect(fails(() => c.tensor("nope")).tensor).toBe("nope");
    c.close();
  });
});
