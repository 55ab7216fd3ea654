// A checkpoint written in parts (the packer: one part file per layer as layers finish, then the
// parts copied into the shards) must be the checkpoint one write of the whole model gives: the
// same shards byte for byte as writeQuantizedCheckpoint from memory, and — for a model whose
// layers carry different schemes — the same config as the format's writer run once over every
// module (the reference here is `format.write` on the whole input, not the part machinery).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { quantizeFp8, quantizeIntRtn } from "@moeq/quant";
import { fromF32, type Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import {
  assembleCheckpoint,
  checkpointPartOf,
  checkpointParts,
  getFormat,
  type QuantizedModule,
  readCheckpointPart,
  readQuantizedCheckpoint,
  writeCheckpointPart,
  writeQuantizedCheckpoint,
} from "../src/index.ts";

const root = mkdtempSync(join(tmpdir(), "moeq-parts-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const rand = (n: number, seed: number): Float32Array => {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 0.05 * (2 * (s / 2 ** 32) - 1);
  });
};

const H = 64;
const I = 32;
const LAYERS = 3;

/** Three layers of two experts; `mixed`: layer 1's experts FP8, the others int4 (two config groups). */
function model(mixed: boolean) {
  const modules: QuantizedModule[] = [];
  const passthrough = new Map<string, Tensor>([
    ["model.embed_tokens.weight", fromF32(rand(16 * H, 1), "BF16", [16, H])],
    ["model.norm.weight", fromF32(rand(H, 2), "BF16", [H])],
    ["lm_head.weight", fromF32(rand(16 * H, 3), "BF16", [16, H])],
  ]);
  for (let L = 0; L < LAYERS; L++) {
    passthrough.set(`model.layers.${L}.input_layernorm.weight`, fromF32(rand(H, 10 + L), "BF16", [H]));
    passthrough.set(`model.layers.${L}.self_attn.q_proj.weight`, fromF32(rand(H * H, 20 + L), "BF16", [H, H]));
    passthrough.set(`model.layers.${L}.mlp.gate.weight`, fromF32(rand(2 * H, 30 + L), "BF16", [2, H]));
    for (const e of [0, 1])
      for (const [proj, rows, cols] of [
        ["gate_proj", I, H],
        ["up_proj", I, H],
        ["down_proj", H, I],
      ] as const) {
        const w = rand(rows * cols, 100 * L + 10 * e + proj.length);
        const name = `model.layers.${L}.mlp.experts.${e}.${proj}`;
        modules.push({
          name,
          weight:
            mixed && L === 1
              ? quantizeFp8(w, rows, cols, { strategy: "channel" })
              : {
                  kind: "int",
                  rows,
                  cols,
                  result: quantizeIntRtn(w, rows, cols, {
                    bits: 4,
                    groupSize: 16,
                    symmetric: true,
                    clip: "minmax",
                    scaleDtype: "bf16",
                    name,
                  }),
                },
        });
      }
  }
  return { modules, passthrough, modelConfig: { model_type: "qwen3_moe" } };
}

const filesOf = (dir: string) =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f)).toString("base64")]),
  );

describe("a checkpoint written in parts", () => {
  it("names each tensor's part by its layer, model-level tensors −1", () => {
    expect(checkpointPartOf("model.layers.12.mlp.experts.3.down_proj.weight")).toBe(12);
    expect(checkpointPartOf("transformer.blocks.4.ffn.router.layer.weight")).toBe(4);
    expect(checkpointPartOf("model.embed_tokens.weight")).toBe(-1);
    expect(checkpointPartOf("lm_head.weight")).toBe(-1);
  });

  for (const mixed of [false, true])
    it(`part files assembled = the in-memory write, byte for byte, several shards (${mixed ? "two schemes" : "one scheme"})`, () => {
      const input = model(mixed);
      const opts = { maxShardBytes: 20_000 };
      const whole = join(root, `whole-${mixed}`);
      const w1 = writeQuantizedCheckpoint(whole, "compressed-tensors", input, opts);
      expect(w1.shards.length).toBeGreaterThan(2);

      // the packer's path: every part to its own file (in an order other than the parts'), then assembled
      const parts = checkpointParts(input);
      expect(parts).toHaveLength(LAYERS + 1);
      const files = parts.map((_, i) => join(root, `part-${mixed}-${i}.safetensors`));
      for (const i of [2, 0, 3, 1]) writeCheckpointPart(files[i], "compressed-tensors", parts[i]);
      const streamed = join(root, `parts-${mixed}`);
      const w2 = assembleCheckpoint(streamed, "compressed-tensors", files.map(readCheckpointPart), input, opts);
      expect(w2.shards).toEqual(w1.shards);
      expect(filesOf(streamed)).toEqual(filesOf(whole));

      // the config one write of the whole model states
      const reference = getFormat("compressed-tensors").write(input);
      const written = JSON.parse(readFileSync(join(streamed, "config.json"), "utf8"));
      expect(written).toEqual(JSON.parse(JSON.stringify(reference.config)));
      expect(w2.ignore).toEqual(reference.ignore);
      expect(w2.notes).toEqual(reference.notes);
      if (mixed) expect(Object.keys(written.quantization_config.config_groups)).toHaveLength(2);

      // and it reads back: every module dequantizes to the quantizer's values
      const ck = readQuantizedCheckpoint(streamed);
      try {
        for (const m of input.modules) {
          const want =
            m.weight.kind === "int" ? m.weight.result.dequant : m.weight.kind === "fp8" ? m.weight.dequant : null;
          expect(Array.from(ck.dequantize(m.name).weight)).toEqual(Array.from(want!));
        }
      } finally {
        ck.close();
      }
    });

  it("a format with one config per model refuses parts that disagree, naming the modules", () => {
    const input = model(false);
    const parts = checkpointParts(input);
    // layer 2 quantized with another group size: gptq has one quantize_config for the whole model
    parts[3] = {
      ...parts[3],
      modules: parts[3].modules.map((m) => {
        if (m.weight.kind !== "int") return m;
        const w = m.weight.result.dequant as Float32Array;
        return {
          ...m,
          weight: {
            ...m.weight,
            result: quantizeIntRtn(w, m.weight.rows, m.weight.cols, {
              bits: 4,
              groupSize: 32,
              symmetric: true,
              clip: "minmax",
              scaleDtype: "bf16",
              name: m.name,
            }),
          },
        };
      }),
    };
    const files = parts.map((_, i) => join(root, `gptq-part-${i}.safetensors`));
    for (const [i, p] of parts.entries()) writeCheckpointPart(files[i], "gptq", p);
    expect(() => assembleCheckpoint(join(root, "gptq-bad"), "gptq", files.map(readCheckpointPart), input)).toThrow(
      /config of the part with model\.layers\.2\.mlp\.experts\.0\.gate_proj differs from that of model\.layers\.0\.mlp\.experts\.0\.gate_proj/,
    );
  });
});
