// `--calib` / `--eval` text specs:
//   brown            the Brown corpus split, window count and length from the caller's defaults
//   brown:NxT        N windows of T tokens from the Brown corpus split
//   <path>.txt       one file = one document (the text verbatim); to put several documents in
//                    one .txt, write the model's separator token (e.g. <|endoftext|>) between them
//   <path>.jsonl     one document per line, {"text": "..."}; blank lines are skipped
//   <path>(.txt|.jsonl):NxT   a file with explicit window count and length
// Files are used whole whatever the split; the calib/eval split only applies to Brown.
import { readFileSync } from "node:fs";
import { Effect } from "effect";
import { CalibSpecError, TextSourceError } from "./errors.ts";

export type CalibSource =
  | { readonly kind: "brown" }
  | { readonly kind: "txt"; readonly path: string }
  | { readonly kind: "jsonl"; readonly path: string };

export interface CalibSpec {
  /** The spec as the user wrote it (for messages and the report's settings). */
  readonly spec: string;
  readonly source: CalibSource;
  /** Number of windows, when the spec names it. */
  readonly n?: number;
  /** Tokens per window, when the spec names it. */
  readonly seqLen?: number;
}

const SIZE = /^(\d+)x(\d+)$/;

function parseSize(spec: string, size: string): { n: number; seqLen: number } {
  const m = SIZE.exec(size);
  if (!m) throw new CalibSpecError({ spec, reason: `size "${size}" is not NxT (e.g. 128x256)` });
  const n = Number(m[1]);
  const seqLen = Number(m[2]);
  if (!Number.isSafeInteger(n) || n < 1) throw new CalibSpecError({ spec, reason: "window count N must be ≥ 1" });
  if (!Number.isSafeInteger(seqLen) || seqLen < 2)
    throw new CalibSpecError({ spec, reason: "window length T must be ≥ 2 (one token predicts the next)" });
  return { n, seqLen };
}

function parse(spec: string): CalibSpec {
  const s = spec.trim();
  if (s === "brown") return { spec, source: { kind: "brown" } };
  if (s.startsWith("brown:")) return { spec, source: { kind: "brown" }, ...parseSize(spec, s.slice(6)) };
  const sized = /^(.*\.(?:txt|jsonl)):(\d+x\d+)$/i.exec(s);
  const path = sized ? sized[1] : s;
  const size = sized ? parseSize(spec, sized[2]) : {};
  const lower = path.toLowerCase();
  if (lower.endsWith(".txt") && path.length > 4) return { spec, source: { kind: "txt", path }, ...size };
  if (lower.endsWith(".jsonl") && path.length > 6) return { spec, source: { kind: "jsonl", path }, ...size };
  throw new CalibSpecError({
    spec,
    reason: "expected brown, brown:NxT, <file>.txt or <file>.jsonl (optionally followed by :NxT)",
  });
}

/** Parse a text spec; files are not touched until their documents are read. */
export function parseCalibSpec(spec: string): Effect.Effect<CalibSpec, CalibSpecError> {
  return Effect.try({
    try: () => parse(spec),
    catch: (e) => (e instanceof CalibSpecError ? e : new CalibSpecError({ spec, reason: String(e) })),
  });
}

// ignoreBOM keeps a leading U+FEFF in the text, as readFileSync(path, "utf8") did (same tokens as before)
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The file as UTF-8 text; a binary file (invalid UTF-8 or NUL bytes) is refused, not tokenized as noise. */
function readText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new TextSourceError({ path, reason: (e as Error).message });
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new TextSourceError({ path, reason: "not UTF-8 text (a binary file?)" });
  }
  const nul = text.indexOf("\0");
  if (nul >= 0) throw new TextSourceError({ path, reason: `a NUL byte at offset ${nul} (a binary file?)` });
  return text;
}

/** Documents of a .txt file: the whole file is one document. */
export function readTxtDocuments(path: string): Effect.Effect<string[], TextSourceError> {
  return Effect.try({
    try: () => {
      const text = readText(path);
      if (text.trim().length === 0) throw new TextSourceError({ path, reason: "file has no text" });
      return [text];
    },
    catch: (e) => (e instanceof TextSourceError ? e : new TextSourceError({ path, reason: String(e) })),
  });
}

/** Documents of a .jsonl file: one `{"text": string}` object per non-blank line. */
export function readJsonlDocuments(path: string): Effect.Effect<string[], TextSourceError> {
  return Effect.try({
    try: () => {
      const docs: string[] = [];
      readText(path)
        .split("\n")
        .forEach((raw, i) => {
          const line = raw.trim();
          if (line.length === 0) return;
          let record: unknown;
          try {
            record = JSON.parse(line);
          } catch (e) {
            throw new TextSourceError({ path, line: i + 1, reason: `bad JSON (${(e as Error).message})` });
          }
          const text = (record as { text?: unknown } | null)?.text;
          if (typeof record !== "object" || record === null || typeof text !== "string")
            throw new TextSourceError({ path, line: i + 1, reason: 'expected an object with a string field "text"' });
          if (text.length > 0) docs.push(text);
        });
      if (docs.length === 0) throw new TextSourceError({ path, reason: "no non-empty documents" });
      return docs;
    },
    catch: (e) => (e instanceof TextSourceError ? e : new TextSourceError({ path, reason: String(e) })),
  });
}
