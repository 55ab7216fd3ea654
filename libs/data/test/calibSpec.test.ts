import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import { CalibSpecError, parseCalibSpec, readJsonlDocuments, readTxtDocuments } from "../src/index.ts";

const parse = (s: string) => Effect.runSync(parseCalibSpec(s));
const parseError = (s: string) => Effect.runSync(Effect.flip(parseCalibSpec(s)));

describe("parseCalibSpec", () => {
  it("parses brown, brown:NxT and files with an optional :NxT", () => {
    expect(parse("brown")).toEqual({ spec: "brown", source: { kind: "brown" } });
    expect(parse("brown:16x256")).toEqual({ spec: "brown:16x256", source: { kind: "brown" }, n: 16, seqLen: 256 });
    expect(parse("data/my text.txt")).toEqual({
      spec: "data/my text.txt",
      source: { kind: "txt", path: "data/my text.txt" },
    });
    expect(parse("/x/c.JSONL")).toMatchObject({ source: { kind: "jsonl", path: "/x/c.JSONL" } });
    expect(parse("a:b/c.jsonl:8x128")).toMatchObject({
      source: { kind: "jsonl", path: "a:b/c.jsonl" },
      n: 8,
      seqLen: 128,
    });
  });

  it("rejects malformed specs with a typed error naming the spec", () => {
    for (const bad of ["brown:16", "brown:0x256", "brown:4x1", "brown:axb", "wiki", "corpus.csv", ".txt", "x.txt:3"]) {
      const err = parseError(bad);
      expect(err, bad).toBeInstanceOf(CalibSpecError);
      expect(err.message).toContain(`"${bad}"`);
    }
  });
});

describe("text files", () => {
  const dir = mkdtempSync(join(tmpdir(), "moeq-calib-"));

  it("reads a .txt file as one document, verbatim", () => {
    const path = join(dir, "a.txt");
    writeFileSync(path, "First paragraph.\n\nSecond paragraph.\n");
    expect(Effect.runSync(readTxtDocuments(path))).toEqual(["First paragraph.\n\nSecond paragraph.\n"]);
  });

  it("reads .jsonl records, skipping blank lines, and names the line of bad JSON", () => {
    const path = join(dir, "b.jsonl");
    writeFileSync(path, '{"text": "one"}\n\n{"text": "two", "id": 2}\n');
    expect(Effect.runSync(readJsonlDocuments(path))).toEqual(["one", "two"]);

    writeFileSync(path, '{"text": "one"}\n{"text": "two"\n');
    const err = Effect.runSync(Effect.flip(readJsonlDocuments(path)));
    expect(err._tag).toBe("TextSourceError");
    expect(err.line).toBe(2);
    expect(err.message).toContain(`${path}:2: bad JSON`);

    writeFileSync(path, '{"text": "one"}\n\n{"content": "x"}\n');
    const missing = Effect.runSync(Effect.flip(readJsonlDocuments(path)));
    expect(missing.line).toBe(3);
    expect(missing.message).toContain('"text"');
  });

  it("names the file that cannot be read", () => {
    const path = join(dir, "missing.txt");
    const err = Effect.runSync(Effect.flip(readTxtDocuments(path)));
    expect(err.path).toBe(path);
    expect(err.message).toContain("missing.txt");
  });
});
