// A real checkpoint end to end: the trained tiny Qwen3-MoE in ../shared, experts of layer 0
// quantized to DeepSeek-style FP8 blocks (the layout transformers was verified to load) and to
// NVFP4 compressed-tensors, written next to the unchanged rest of the model and read back.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { nvfp4GlobalScale, quantizeFp8, quantizeNvfp4 } from "@moeq/quant";
import { openCheckpoint } from "@moeq/safetensors";
import type { Tensor } from "@moeq/tensor";
import { afterAll, describe, expect, it } from "vitest";
import { type QuantizedModule, readQuantizedCheckpoint, writeQuantizedCheckpoint } from "../src/index.ts";
import { sameBits } from "./helpers.ts";

const here = dirname(fileURLToPath(import.meta.url));
const modelDir = join(here, "../../../../shared/models/tiny-qwen3moe-brown");
const out = mkdtempSync(join(tmpdir(), "moeq-real-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

const EXPERTS = 6;

const load = () => {
  const src = openCheckpoint(modelDir);
  const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
  const targets = src.names().filter((n) => {
    const m = /^model\.layers\.0\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(n);
    return m !== null && Number(m[1]) < EXPERTS;
  });
  return { src, config, targets };
};

describe("tiny-qwen3moe-brown", () => {
  for (const format of ["fp8-block", "compressed-tensors"] as const) {
    it(`layer-0 experts → ${format} → read back bit-exactly, everything else unchanged`, () => {
      const { src, config, targets } = load();
      try {
        expect(targets).toHaveLength(EXPERTS * 3);
        let amax = 0;
        for (const n of targets) for (const v of src.f32(n)) amax = Math.max(amax, Math.abs(v));
        const gs = nvfp4GlobalScale(amax, "compressed-tensors");
        const modules: QuantizedModule[] = targets.map((n) => {
          const [rows, cols] = src.entry(n).shape as [number, number];
          const w = src.f32(n);
          return {
            name: n.slice(0, -".weight".length),
            weight:
              format === "fp8-block"
                ? quantizeFp8(w, rows, cols, { strategy: "block", block: [128, 128], name: n })
                : quantizeNvfp4(w, rows, cols, { globalScale: gs, name: n }),
          };
        });
        const passthrough = new Map<string, Tensor>();
        for (const n of src.names()) if (!targets.includes(n)) passthrough.set(n, src.tensor(n));
        const dir = join(out, format);
        const res = writeQuantizedCheckpoint(
          dir,
          format,
          { modules, passthrough, modelConfig: config },
          { sourceDir: modelDir },
        );
        expect(res.copied).toEqual(
          expect.arrayContaining(["generation_config.json", "tokenizer.json", "tokenizer_config.json"]),
        );
        expect(res.ignore).toContain("lm_head");
        expect(res.ignore).toContain("model.layers.0.mlp.gate");
        const ck = readQuantizedCheckpoint(dir);
        try {
          expect(ck.format).toBe(format);
          expect(ck.config.model_type).toBe("qwen3_moe");
          expect(ck.quantizedModules).toHaveLength(EXPERTS * 3);
          for (const m of modules) {
            const d = ck.dequantize(m.name);
            expect(sameBits(d.weight, m.weight.kind === "int" ? m.weight.result.dequant : m.weight.dequant)).toBe(true);
          }
          expect(ck.passthroughNames.length).toBe(passthrough.size);
          for (const n of [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.3.mlp.experts.31.down_proj.weight",
          ]) {
            expect(Buffer.from(ck.tensor(n).data).equals(Buffer.from(src.tensor(n).data))).toBe(true);
          }
        } finally {
          ck.close();
        }
      } finally {
        src.close();
      }
    });
  }
});
