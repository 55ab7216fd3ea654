// A distributed evaluation scores each batch of windows in a separate evaluateCheckpoint call
// (what an evaluator worker does with the windows of its item) and ships the per-token scores
// through their byte encoding; merged in batch order they must give the single-process
// statistics bit for bit. The checkpoint is real: layer-0 experts of the trained model in FP8
// blocks, read back through the format's decoder.
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TensorDescriptor } from "@moeq/contracts";
import type { TokenScores } from "@moeq/eval";
import { scoreTokens } from "@moeq/eval";
import { type QuantizedModule, writeQuantizedCheckpoint } from "@moeq/formats";
import { quantizeFp8 } from "@moeq/quant";
import { openCheckpoint } from "@moeq/safetensors";
import type { Tensor } from "@moeq/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkpointFiles, fetchCheckpoint, linkInto, localCheckpointDir } from "../src/checkpoint-files.ts";
import { type Evaluation, evaluateCheckpoint } from "../src/evaluate.ts";
import {
  type BatchScores,
  decodeTokenScores,
  encodeTokenScores,
  idsBytes,
  idsFromBytes,
  type WindowBatch,
  windowBatches,
} from "../src/window-batches.ts";
import { forwardOptions } from "../src/window-work.ts";

const here = dirname(fileURLToPath(import.meta.url));
const modelDir = join(here, "..", "..", "..", "..", "shared", "models", "tiny-qwen3moe-brown");
let out: string;
let quantized: string;

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), "moeq-eval-dist-"));
  quantized = join(out, "q");
  const src = openCheckpoint(modelDir);
  try {
    const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, unknown>;
    const targets = src
      .names()
      .filter((n) => /^model\.layers\.0\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight$/.test(n));
    const modules: QuantizedModule[] = targets.map((n) => {
      const [rows, cols] = src.entry(n).shape as [number, number];
      return {
        name: n.slice(0, -".weight".length),
        weight: quantizeFp8(src.f32(n), rows, cols, { strategy: "block", block: [128, 128], name: n }),
      };
    });
    const passthrough = new Map<string, Tensor>();
    for (const n of src.names()) if (!targets.includes(n)) passthrough.set(n, src.tensor(n));
    writeQuantizedCheckpoint(
      quantized,
      "fp8-block",
      { modules, passthrough, modelConfig: config },
      { sourceDir: modelDir },
    );
  } finally {
    src.close();
  }
}, 60_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

const base = () => ({
  referenceDir: modelDir,
  quantizedDir: quantized,
  texts: "random:3x24",
  seed: 7,
  batchWindows: 2,
});

/** What a worker does with one item: evaluate exactly the batch's windows, keep its token scores. */
async function scoreOnWorker(b: WindowBatch): Promise<BatchScores> {
  let tokens: TokenScores | undefined;
  const ids = idsFromBytes(idsBytes(b.ids), b.nb, b.seqLen, "ids");
  const ev = await evaluateCheckpoint({
    ...base(),
    batchWindows: b.nb,
    windows: { n: b.nb, seqLen: b.seqLen, ids },
    layerErrors: b.b0 === 0,
    onBatchScored: (_, s) => {
      tokens = s;
    },
  });
  // through the wire format, as the scores travel home
  const back = decodeTokenScores(encodeTokenScores(tokens!), `batch ${b.b0}`, b.nb * (b.seqLen - 1));
  return { tokens: back, ...(b.b0 === 0 ? { layers: ev.layers } : {}) };
}

describe("a distributed evaluation", () => {
  it("merges per-batch scores from separate evaluations into the single-process statistics, bit for bit", async () => {
    const single: Evaluation = await evaluateCheckpoint(base());
    const seen: number[] = [];
    const split = await evaluateCheckpoint({
      ...base(),
      scoreElsewhere: (batches) => {
        seen.push(...batches.map((b) => b.nb));
        return batches.map(scoreOnWorker);
      },
    });
    expect(seen).toEqual([2, 1]);
    expect(single.kld.tokens).toBe(3 * 23);
    expect(single.kld.kld.mean).toBeGreaterThan(0);
    expect(single.layers[0].outputRelError).toBeGreaterThan(0);
    // each expert's output error on the first batch's rows routed to it: every routed row counted
    // once per expert that got it (top-k per row), a real but bounded error
    const moeLayers = new Set(single.expertOutputErrors.map((x) => x.layer));
    expect(moeLayers.size).toBeGreaterThan(0);
    for (const L of moeLayers) {
      const rows = single.expertOutputErrors.filter((x) => x.layer === L).reduce((n, x) => n + x.tokens, 0);
      expect(rows % (2 * 24), `layer ${L}`).toBe(0); // first batch: 2 windows × 24 tokens, × top-k
    }
    // layer 0's experts are FP8 in the checkpoint, the others as they were: exactly 0 there
    for (const x of single.expertOutputErrors) {
      if (x.layer === 0) expect(x.relError, `${x.layer}/${x.expert}`).toBeGreaterThan(0);
      else expect(x.relError, `${x.layer}/${x.expert}`).toBe(0);
      expect(x.relError, `${x.layer}/${x.expert}`).toBeLessThan(1);
    }
    expect(single.expertOutputErrors.some((x) => x.layer === 0)).toBe(true);
    // JSON keeps every double exactly (shortest round-trip form), so equal text = equal bits
    expect(JSON.stringify(split.kld)).toBe(JSON.stringify(single.kld));
    expect(JSON.stringify(split.layers)).toBe(JSON.stringify(single.layers));
    expect(split.expertWeightErrors).toEqual(single.expertWeightErrors);
  }, 120_000);
});

describe("token scores on the wire", () => {
  const logits = (rows: number, vocab: number, seed: number) => {
    const a = new Float32Array(rows * vocab);
    let s = seed;
    for (let i = 0; i < a.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      a[i] = (s / 2 ** 32) * 8 - 4;
    }
    return a;
  };

  it("round-trips every value bit for bit, with and without targets (odd sizes)", () => {
    for (const [rows, vocab] of [
      [1, 3],
      [7, 11],
      [37, 5],
    ]) {
      const targets = Int32Array.from({ length: rows }, (_, i) => (i * 7) % vocab);
      for (const t of [targets, null]) {
        const s = scoreTokens(logits(rows, vocab, rows), logits(rows, vocab, vocab + 1), vocab, t);
        const back = decodeTokenScores(encodeTokenScores(s), "x", rows);
        expect(Buffer.from(back.kld.buffer).equals(Buffer.from(s.kld.buffer))).toBe(true);
        expect([...back.sameTop]).toEqual([...s.sameTop]);
        if (t) {
          expect(Buffer.from(back.nll!.buffer).equals(Buffer.from(s.nll!.buffer))).toBe(true);
          expect(Buffer.from(back.nllBase!.buffer).equals(Buffer.from(s.nllBase!.buffer))).toBe(true);
        } else expect(back.nll).toBeNull();
      }
    }
  });

  it("refuses truncated, oversized, mislabelled and mis-sized scores with an error naming the batch", () => {
    const s = encodeTokenScores(scoreTokens(logits(4, 6, 1), logits(4, 6, 2), 6, Int32Array.of(0, 1, 2, 3)));
    const refuse = (b: Uint8Array, rows: number | undefined, re: RegExp) =>
      expect(() => decodeTokenScores(b, "batch 8 from w3", rows)).toThrow(re);
    refuse(s.subarray(0, 5), undefined, /batch 8 from w3: 5 bytes, shorter than/);
    refuse(s.subarray(0, s.length - 1), undefined, /batch 8 from w3: \d+ bytes, 4 rows need/);
    refuse(Uint8Array.from([...s, 0]), undefined, /4 rows need/);
    refuse(s, 5, /4 scored tokens, the batch has 5/);
    const flags = s.slice();
    flags[4] = 2;
    refuse(flags, undefined, /unknown flags 2/);
    const top = s.slice();
    top[top.length - 1] = 7;
    refuse(top, undefined, /sameTop\[3\] is 7/);
    expect(() => idsFromBytes(new Uint8Array(10), 1, 3, "ids of batch 0")).toThrow(
      /ids of batch 0: 10 bytes of token ids, 1×3 windows need 12/,
    );
  });

  it("cuts the windows as the single-process loop does", () => {
    const ids = Int32Array.from({ length: 5 * 3 }, (_, i) => i);
    const b = windowBatches({ n: 5, seqLen: 3, ids }, 2);
    expect(b.map((x) => [x.b0, x.nb, [...x.ids]])).toEqual([
      [0, 2, [0, 1, 2, 3, 4, 5]],
      [2, 2, [6, 7, 8, 9, 10, 11]],
      [4, 1, [12, 13, 14]],
    ]);
  });
});

describe("the options a worker's forward is given", () => {
  it("are the plain options of the home evaluation except those of its loop and windows", () => {
    const o = {
      ...base(),
      cacheDir: "/c",
      activations: "weights-only",
      layerErrors: true,
      onProgress: () => undefined,
    };
    expect(forwardOptions(o)).toEqual({ activations: "weights-only" });
  });
});

describe("model files for workers", () => {
  it("lists a directory's files with their hashes, fetches them once, and refuses bad names and bytes naming the file", async () => {
    const src = join(out, "files-src");
    mkdirSync(join(src, "sub"), { recursive: true });
    writeFileSync(join(src, "config.json"), '{"a":1}');
    writeFileSync(join(src, "model.safetensors"), new Uint8Array(70_000).fill(7));
    writeFileSync(join(src, ".hidden"), "x");
    const linked = linkInto(src, join(out, "files-linked"));
    const files = checkpointFiles(linked);
    expect(files.map((f) => f.name)).toEqual(["config.json", "model.safetensors"]);
    expect(files[1].file).toMatchObject({
      dtype: "u8",
      shape: [70_000],
      loc: { kind: "file", offset: 0, bytes: 70_000 },
    });
    // sha256 of 70 000 bytes of 7, computed independently
    expect(files[1].file.checksum?.hex).toBe(createHash("sha256").update(Buffer.alloc(70_000, 7)).digest("hex"));
    expect(localCheckpointDir(files, "ref")).toBe(linked);

    const fetched: string[] = [];
    const fetch = async (d: TensorDescriptor, what: string) => {
      fetched.push(what);
      return new Uint8Array(readFileSync(d.loc.kind === "file" ? d.loc.path : ""));
    };
    const cache = join(out, "files-cache");
    const copy = await fetchCheckpoint(files, cache, fetch, "batch 0 reference", () => undefined);
    expect(readFileSync(join(copy, "config.json"), "utf8")).toBe('{"a":1}');
    expect(await fetchCheckpoint(files, cache, fetch, "batch 2 reference", () => undefined)).toBe(copy);
    expect(fetched).toEqual(["batch 0 reference config.json", "batch 0 reference model.safetensors"]);

    const tampered = async () => new Uint8Array(70_000).fill(8);
    await expect(
      fetchCheckpoint(files.slice(1), join(out, "c2"), tampered, "batch 4 reference", () => undefined),
    ).rejects.toThrow(/batch 4 reference: fetched model\.safetensors does not hash to/);
    const evil = [{ ...files[0], name: "../config.json" }];
    await expect(fetchCheckpoint(evil, join(out, "c3"), fetch, "batch 6 checkpoint", () => undefined)).rejects.toThrow(
      /batch 6 checkpoint: file name "\.\.\/config\.json" is not a plain file name/,
    );
    const mixed = [
      files[0],
      {
        name: "other.json",
        file: {
          ...files[0].file,
          loc: { kind: "file" as const, path: join(src, "sub", "other.json"), offset: 0, bytes: 7 },
        },
      },
    ];
    expect(() => localCheckpointDir(mixed, "batch 8 checkpoint")).toThrow(
      /batch 8 checkpoint: the files lie in 2 directories/,
    );
  });
});
