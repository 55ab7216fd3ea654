import { Effect } from "effect";
import { describe, expect, it } from "vitest";
import {
  brownDocumentNames,
  brownSplitOf,
  brownTaggedToText,
  detokenizeTagged,
  loadBrownDocuments,
  loadTokenizer,
  tokenStream,
} from "../src/index.ts";
import { goldenInputIds, goldenSamples, modelDir } from "./shared.ts";

function indexOfSequence(stream: Int32Array, needle: readonly number[]): number {
  outer: for (let s = 0; s + needle.length <= stream.length; s++) {
    for (let j = 0; j < needle.length; j++) if (stream[s + j] !== needle[j]) continue outer;
    return s;
  }
  return -1;
}

describe("Brown corpus text", () => {
  it("detokenizes tagged tokens: tags stripped, quotes and punctuation glued, -- spaced", () => {
    const line =
      "work/nn ,/, ``/`` Signal/nn-tl ''/'' ,/, and/cc (/( 1/cd )/) the/at room/nn --/-- the/at 1/2/cd ;/. ;/.";
    expect(detokenizeTagged(line.split(" "))).toBe('work, "Signal", and (1) the room -- the 1/2;;');
  });

  it("joins sentences of a paragraph with a space and paragraphs with a newline", () => {
    const tagged = "\n\n\tA/at b/nn ./.\nC/np d/nn :/: \n\n\n\t``/`` E/np ./. ''/''\n\n";
    expect(brownTaggedToText(tagged)).toBe('A b. C d:\n"E."');
  });

  it("splits 500 documents sorted by name into 450 calibration and 50 held-out (index % 10 == 9)", () => {
    const names = brownDocumentNames();
    expect(names.length).toBe(500);
    expect(names[0]).toBe("ca01");
    expect(names[499]).toBe("cr09");
    const held = names.filter((_, i) => brownSplitOf(i) === "eval");
    expect(held.length).toBe(50);
    expect(held.slice(0, 3)).toEqual(["ca10", "ca20", "ca30"]);
    expect(held).toContain("cb06");
    const evalDocs = Effect.runSync(loadBrownDocuments("eval"));
    expect(evalDocs.map((d) => d.name)).toEqual(held);
  });

  it("reproduces the golden sample texts exactly as prefixes of held-out documents ca10 and cc09", () => {
    const docs = Effect.runSync(loadBrownDocuments("eval"));
    const [first, second] = goldenSamples();
    expect(docs.find((d) => d.name === "ca10")!.text.startsWith(first.text)).toBe(true);
    expect(docs.find((d) => d.name === "cc09")!.text.startsWith(second.text)).toBe(true);
  });

  it("contains both golden input_ids rows of the trained model in the held-out token stream", {
    timeout: 60_000,
  }, () => {
    const tokenizer = Effect.runSync(loadTokenizer(modelDir));
    const docs = Effect.runSync(loadBrownDocuments("eval"));
    const stream = tokenStream(
      docs.map((d) => d.text),
      tokenizer,
    );
    for (const row of goldenInputIds()) expect(indexOfSequence(stream, row)).toBeGreaterThanOrEqual(0);
  });
});
