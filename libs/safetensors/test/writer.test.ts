import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type DType, dtypeBytes, fromF32, numel, toF32 } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import {
  createCheckpointWriter,
  openCheckpoint,
  planShards,
  SafetensorsError,
  serializeSafetensors,
} from "../src/index.ts";
import { rng, tempDir } from "./helpers.ts";

const u8 = (name: string, n: number) => ({ name, dtype: "U8" as DType, shape: [n] });

describe("shard assignment (huggingface_hub split_state_dict_into_shards)", () => {
  it("follows the walk-in-order rule, oversized tensors alone, appended at once", () => {
    // sizes 6,10,30,2,2 with a limit of 10: 30 goes alone immediately, before the open shard
    const plan = [u8("layer_1", 6), u8("layer_2", 10), u8("layer_3", 30), u8("layer_4", 2), u8("layer_5", 2)];
    const shards = planShards(plan, 10);
    expect(shards.map((s) => [s.file, s.tensors.map((t) => t.name)])).toEqual([
      ["model-00001-of-00004.safetensors", ["layer_1"]],
      ["model-00002-of-00004.safetensors", ["layer_3"]],
      ["model-00003-of-00004.safetensors", ["layer_2"]],
      ["model-00004-of-00004.safetensors", ["layer_4", "layer_5"]],
    ]);
  });
  it("one shard is named model.safetensors", () => {
    expect(planShards([u8("a", 3), u8("b", 4)], 100).map((s) => s.file)).toEqual(["model.safetensors"]);
  });
});

describe("streaming sharded writer", () => {
  const dtypes: DType[] = ["F32", "BF16", "F16", "I64", "U8", "F8_E4M3", "I32"];
  function makePlan(seed: number, count: number) {
    const r = rng(seed);
    return Array.from({ length: count }, (_, i) => {
      const dtype = dtypes[i % dtypes.length];
      const shape = [1 + Math.floor(r() * 13), 1 + Math.floor(r() * 7)];
      const bytes = new Uint8Array(numel(shape) * dtypeBytes(dtype)).map(() => Math.floor(r() * 256));
      return { name: `layers.${i}.w${i % 3}`, dtype, shape, bytes };
    });
  }

  it("writes in any order, shards by size, and reads back identically through the index", () => {
    using tmp = tempDir("shard");
    const plan = makePlan(7, 40);
    const out = join(tmp.dir, "ckpt");
    const w = createCheckpointWriter(
      out,
      plan.map(({ name, dtype, shape }) => ({ name, dtype, shape })),
      { maxShardBytes: 1500 },
    );
    expect(w.shards.length).toBeGreaterThan(2);
    for (const t of [...plan].reverse()) w.write(t.name, t.bytes);
    expect(existsSync(out)).toBe(false); // nothing visible before finish
    w.finish({ "config.json": '{"a":1}' });
    expect(readdirSync(tmp.dir)).toEqual(["ckpt"]); // temp dir renamed away
    expect(readFileSync(join(out, "config.json"), "utf8")).toBe('{"a":1}');
    const index = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8"));
    expect(index.metadata.total_size).toBe(plan.reduce((s, t) => s + t.bytes.length, 0));
    const c = openCheckpoint(out);
    expect(c.names().sort()).toEqual(plan.map((t) => t.name).sort());
    expect(c.metadata).toEqual({ format: "pt" });
    for (const t of plan) {
      const got = c.tensor(t.name);
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect(Buffer.compare(Buffer.from(got.data), Buffer.from(t.bytes))).toBe(0);
      expect(index.weight_map[t.name]).toBe(c.entry(t.name).file.slice(out.length + 1));
    }
    // each shard equals what the in-memory serializer (byte-identical to Python's) makes of its tensors
    for (const f of w.shards) {
      const names = Object.keys(index.weight_map).filter((n) => index.weight_map[n] === f);
      const mine = serializeSafetensors(
        names.map((n) => [n, c.tensor(n)]),
        { format: "pt" },
      );
      expect(Buffer.compare(Buffer.from(mine), readFileSync(join(out, f)))).toBe(0);
    }
    c.close();
  });

  it("writes the index the way transformers does (json.dumps indent=2, sort_keys, trailing newline)", () => {
    using tmp = tempDir("index");
    const out = join(tmp.dir, "m");
    const w = createCheckpointWriter(out, [u8("b", 4), u8("a", 4), u8("é", 4)], { maxShardBytes: 4 });
    for (const n of ["a", "b", "é"]) w.write(n, new Uint8Array(4));
    w.finish();
    expect(readFileSync(join(out, "model.safetensors.index.json"), "utf8")).toBe(
      [
        "{",
        '  "metadata": {',
        '    "total_size": 12',
        "  },",
        '  "weight_map": {',
        '    "a": "model-00002-of-00003.safetensors",',
        '    "b": "model-00001-of-00003.safetensors",',
        '    "\\u00e9": "model-00003-of-00003.safetensors"',
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  it("a single shard is model.safetensors without an index, and replaces an existing directory", () => {
    using tmp = tempDir("single");
    const out = join(tmp.dir, "m");
    for (const v of [1, 2]) {
      const x = new Float32Array([v, -v, 0.5]);
      const w = createCheckpointWriter(out, [{ name: "x", dtype: "BF16", shape: [3] }]);
      w.write("x", fromF32(x, "BF16", [3]).data);
      w.finish();
      expect(readdirSync(out)).toEqual(["model.safetensors"]);
      const c = openCheckpoint(out);
      expect(Array.from(toF32(c.tensor("x")))).toEqual([v, -v, 0.5]);
      c.close();
    }
    expect(readdirSync(tmp.dir)).toEqual(["m"]);
  });

  it("rejects bad writes with typed errors naming the tensor, and abort leaves nothing", () => {
    using tmp = tempDir("bad");
    const out = join(tmp.dir, "m");
    const w = createCheckpointWriter(out, [u8("a", 4), u8("b", 2)]);
    const err = (f: () => void) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsError);
        return (e as SafetensorsError).message;
      }
      throw new Error("no error");
    };
    expect(err(() => w.write("zz", new Uint8Array(1)))).toMatch(/"zz".*not in the plan/);
    expect(err(() => w.write("a", new Uint8Array(3)))).toMatch(
      /model\.safetensors \(tensor "a"\): got 3 bytes, the plan needs 4/,
    );
    w.write("a", new Uint8Array(4));
    expect(err(() => w.write("a", new Uint8Array(4)))).toMatch(/"a".*written twice/);
    expect(err(() => w.finish())).toMatch(/"b".*never written/);
    w.abort();
    expect(readdirSync(tmp.dir)).toEqual([]);
    expect(err(() => createCheckpointWriter(out, [u8("a", 1), u8("a", 1)]))).toMatch(/named twice/);
    expect(readdirSync(tmp.dir)).toEqual([]);
  });
});
