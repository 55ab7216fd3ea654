import { mkdtempSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import {
  calibrationWindows,
  loadBrownDocuments,
  loadTokenizer,
  parseCalibSpec,
  tokenStream,
  windowStarts,
} from "../src/index.ts";
import { modelDir } from "./shared.ts";

const tokenizer = Effect.runSync(loadTokenizer(modelDir));

describe("windowStarts", () => {
  it("places N non-overlapping windows inside the stream, in order, reproducibly per seed", () => {
    for (const [length, n, t] of [
      [1000, 7, 33],
      [231, 7, 33],
      [5000, 1, 4999],
      [97, 3, 5],
    ]) {
      const a = windowStarts(length, n, t, 11);
      expect(a).toEqual(windowStarts(length, n, t, 11));
      expect(a.length).toBe(n);
      expect(a[0]).toBeGreaterThanOrEqual(0);
      for (let i = 1; i < n; i++) expect(a[i]).toBeGreaterThanOrEqual(a[i - 1] + t);
      expect(a[n - 1] + t).toBeLessThanOrEqual(length);
    }
    expect(windowStarts(231, 7, 33, 5)).toEqual([0, 33, 66, 99, 132, 165, 198]); // no spare tokens
    expect(windowStarts(100000, 8, 16, 1)).not.toEqual(windowStarts(100000, 8, 16, 2));
  });

  it("spreads windows over the whole stream (mean start near the middle)", () => {
    const starts = windowStarts(1_000_000, 2000, 10, 3);
    const mean = starts.reduce((s, x) => s + x, 0) / starts.length;
    expect(Math.abs(mean - 500_000)).toBeLessThan(20_000);
  });
});

describe("calibrationWindows", () => {
  const dir = mkdtempSync(join(tmpdir(), "moeq-win-"));

  it("cuts windows out of the separator-joined token stream of a .jsonl file", () => {
    const texts = Array.from({ length: 9 }, (_, i) => `Document ${i} says ${"hello world ".repeat(i + 3)}and ends.`);
    const path = join(dir, "docs.jsonl");
    writeFileSync(path, texts.map((text) => JSON.stringify({ text })).join("\n"));
    const spec = Effect.runSync(parseCalibSpec(`${path}:5x13`));
    const w = Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 7 }));

    const stream = texts.flatMap((t, i) => [...(i > 0 ? [tokenizer.separatorId] : []), ...tokenizer.encode(t)]);
    expect(w.streamTokens).toBe(stream.length);
    expect(w.documents).toBe(9);
    expect([w.n, w.seqLen, w.ids.length]).toEqual([5, 13, 65]);
    for (const [i, row] of w.windows.entries())
      expect(Array.from(row)).toEqual(stream.slice(w.starts[i], w.starts[i] + 13));
    expect(w.ids).toEqual(Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 7 })).ids);
  });

  it("takes the size from the spec, then the options, then the split default", () => {
    const path = join(dir, "big.txt");
    writeFileSync(path, "The quick brown fox jumps over the lazy dog. ".repeat(1400));
    const bare = Effect.runSync(parseCalibSpec(path));
    const sized = Effect.runSync(parseCalibSpec(`${path}:3x17`));
    expect(Effect.runSync(calibrationWindows(sized, tokenizer, "calib", { n: 9, seqLen: 9 }))).toMatchObject({
      n: 3,
      seqLen: 17,
    });
    expect(Effect.runSync(calibrationWindows(bare, tokenizer, "calib", { n: 9, seqLen: 9 }))).toMatchObject({
      n: 9,
      seqLen: 9,
    });
    expect(Effect.runSync(calibrationWindows(bare, tokenizer, "eval"))).toMatchObject({ n: 64, seqLen: 256 });
  });

  it("caches the token stream on disk and recomputes a cache file that does not fit", () => {
    const path = join(dir, "cached.jsonl");
    writeFileSync(
      path,
      ["alpha beta gamma", "delta epsilon", "zeta eta theta iota"].map((text) => JSON.stringify({ text })).join("\n"),
    );
    const spec = Effect.runSync(parseCalibSpec(`${path}:2x4`));
    const cacheDir = join(dir, "cache");
    const plain = Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 3 }));
    const first = Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 3, cacheDir }));
    const [file] = readdirSync(cacheDir);
    expect(file).toMatch(/^tokens-[0-9a-f]{32}\.i32$/);
    expect(statSync(join(cacheDir, file)).size).toBe(4 * plain.streamTokens);
    expect(first.ids).toEqual(plain.ids);
    expect(Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 3, cacheDir })).ids).toEqual(plain.ids);
    writeFileSync(join(cacheDir, file), "garbage");
    expect(Effect.runSync(calibrationWindows(spec, tokenizer, "calib", { seed: 3, cacheDir })).ids).toEqual(plain.ids);
    expect(statSync(join(cacheDir, file)).size).toBe(4 * plain.streamTokens);
  });

  it("fails with NotEnoughTokensError naming the source when the windows do not fit", () => {
    const path = join(dir, "small.txt");
    writeFileSync(path, "Too short.");
    const spec = Effect.runSync(parseCalibSpec(`${path}:4x64`));
    const err = Effect.runSync(Effect.flip(calibrationWindows(spec, tokenizer, "calib")));
    expect(err._tag).toBe("NotEnoughTokensError");
    expect(err.message).toContain(path);
  });

  it("evaluates on the held-out Brown split by default: 64 × 256 tokens of held-out text", { timeout: 60_000 }, () => {
    const spec = Effect.runSync(parseCalibSpec("brown"));
    const w = Effect.runSync(calibrationWindows(spec, tokenizer, "eval"));
    expect([w.n, w.seqLen, w.documents]).toEqual([64, 256, 50]);
    const heldOut = tokenStream(
      Effect.runSync(loadBrownDocuments("eval")).map((d) => d.text),
      tokenizer,
    );
    expect(w.streamTokens).toBe(heldOut.length);
    for (const i of [0, 31, 63])
      expect(Array.from(w.windows[i])).toEqual(Array.from(heldOut.subarray(w.starts[i], w.starts[i] + 256)));
  });
});
