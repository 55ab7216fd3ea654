import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect, Exit } from "effect";
import { describe, expect, it } from "vitest";
import { loadTokenizer, TokenizerLoadError } from "../src/index.ts";
import { goldenSamples, modelDir } from "./shared.ts";

const tokenizer = Effect.runSync(loadTokenizer(modelDir));

describe("loadTokenizer (tiny-qwen3moe-brown)", () => {
  it("reproduces Hugging Face ids on every tokenizer_golden.json sample", () => {
    const samples = goldenSamples();
    expect(samples.length).toBeGreaterThanOrEqual(8);
    for (const s of samples) {
      const ids = Array.from(tokenizer.encode(s.text));
      expect(ids, JSON.stringify(s.text)).toEqual(s.ids);
      expect(ids, JSON.stringify(s.text)).toEqual(s.ids_auto);
    }
  });

  it("knows the separator and the id space", () => {
    expect(tokenizer.separatorToken).toBe("<|endoftext|>");
    expect(tokenizer.separatorId).toBe(0);
    expect(tokenizer.vocabSize).toBe(4096);
    expect(Array.from(tokenizer.encode("<|endoftext|>"))).toEqual([0]);
  });

  it("decodes back to the text (byte-level BPE is lossless)", () => {
    for (const s of goldenSamples()) expect(tokenizer.decode(s.ids)).toBe(s.text);
  });

  it("fails with a typed error naming tokenizer.json when it is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "moeq-tok-"));
    const exit = Effect.runSyncExit(loadTokenizer(dir));
    expect(Exit.isFailure(exit)).toBe(true);
    const err = Effect.runSync(Effect.flip(loadTokenizer(dir)));
    expect(err).toBeInstanceOf(TokenizerLoadError);
    expect(err.message).toContain(join(dir, "tokenizer.json"));
  });

  it("fails with a typed error on invalid JSON and on a JSON without a vocabulary", () => {
    const dir = mkdtempSync(join(tmpdir(), "moeq-tok-"));
    writeFileSync(join(dir, "tokenizer.json"), "{ not json");
    let err = Effect.runSync(Effect.flip(loadTokenizer(dir)));
    expect(err._tag).toBe("TokenizerLoadError");
    expect(err.message).toMatch(/tokenizer\.json.*not valid JSON/);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0", model: {} }));
    err = Effect.runSync(Effect.flip(loadTokenizer(dir)));
    expect(err.message).toContain("model.vocab");
  });
});
