// Token windows for calibration and evaluation.
//
// Rule: the documents of the source (for Brown: the chosen split, in name order) are tokenized
// one by one and concatenated with the separator token between them; from that stream of L
// tokens, N non-overlapping windows of T tokens are placed at seeded random positions: the
// L − N·T spare tokens are divided into N+1 gaps by N sorted uniform draws in [0, L − N·T]
// (a uniformly random placement of the N windows). Same source + seed → same windows; the
// windows come out in stream order.
//
// Tokenizing the 450 Brown calibration documents takes ~15 s in JS, so the stream can be cached
// (options.cacheDir): one raw int32 file (host byte order, little-endian on x86-64 and arm64) per (tokenizer fingerprint, documents)
// hash, written to a temp file and renamed; a cache file that does not fit is recomputed.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Effect } from "effect";
import { loadBrownDocuments, type Split } from "./brownText.ts";
import { type CalibSpec, readJsonlDocuments, readTxtDocuments } from "./calibSpec.ts";
import { NotEnoughTokensError, type TextSourceError } from "./errors.ts";
import type { TextTokenizer } from "./tokenizer.ts";

/** Defaults when neither the spec nor the caller names a size (evaluation as in calibration.md). */
export const DEFAULT_WINDOWS: Readonly<Record<Split, { n: number; seqLen: number }>> = {
  calib: { n: 128, seqLen: 256 },
  eval: { n: 64, seqLen: 256 },
};

export interface WindowOptions {
  /** Window count, used when the spec does not name one. */
  readonly n?: number;
  /** Window length in tokens, used when the spec does not name one. */
  readonly seqLen?: number;
  /** PRNG seed of the window placement (default 0). */
  readonly seed?: number;
  /** Directory for cached token streams; no caching when absent. */
  readonly cacheDir?: string;
}

export interface TokenWindows {
  readonly n: number;
  readonly seqLen: number;
  /** All windows, row-major [n, seqLen]. */
  readonly ids: Int32Array;
  /** Row views into `ids`. */
  readonly windows: Int32Array[];
  /** Start of each window in the concatenated token stream. */
  readonly starts: number[];
  /** Length of the concatenated token stream the windows were taken from. */
  readonly streamTokens: number;
  readonly documents: number;
}

/** mulberry32: tiny, well-mixed 32-bit PRNG; enough for placing windows reproducibly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Window starts for N windows of T tokens in a stream of L tokens (see the rule above). */
export function windowStarts(streamTokens: number, n: number, seqLen: number, seed: number): number[] {
  const spare = streamTokens - n * seqLen;
  if (spare < 0) throw new RangeError(`${n}×${seqLen} tokens do not fit in ${streamTokens}`);
  const rand = seededRandom(seed);
  const draws = Array.from({ length: n }, () => Math.floor(rand() * (spare + 1)));
  draws.sort((x, y) => x - y);
  return draws.map((d, i) => d + i * seqLen);
}

/** Tokenize documents and join them with the separator token. */
export function tokenStream(documents: readonly string[], tokenizer: TextTokenizer): Int32Array {
  const parts = documents.map((d) => tokenizer.encode(d));
  const total = parts.reduce((s, p) => s + p.length, 0) + Math.max(0, parts.length - 1);
  const out = new Int32Array(total);
  let at = 0;
  parts.forEach((p, i) => {
    if (i > 0) out[at++] = tokenizer.separatorId;
    out.set(p, at);
    at += p.length;
  });
  return out;
}

function streamCacheKey(documents: readonly string[], tokenizer: TextTokenizer): string {
  const h = createHash("sha256").update(tokenizer.fingerprint);
  for (const d of documents) h.update("\u0000").update(d);
  return h.digest("hex").slice(0, 32);
}

function readCachedStream(path: string, vocabSize: number): Int32Array | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return undefined;
  }
  if (buf.length % 4 !== 0) return undefined;
  const ids = new Int32Array(buf.length / 4);
  for (let i = 0; i < ids.length; i++) {
    ids[i] = buf.readInt32LE(4 * i);
    if (ids[i] < 0 || ids[i] >= vocabSize) return undefined;
  }
  return ids;
}

/** tokenStream, memoised on disk under cacheDir. */
export function cachedTokenStream(
  documents: readonly string[],
  tokenizer: TextTokenizer,
  cacheDir: string,
): Int32Array {
  const path = join(cacheDir, `tokens-${streamCacheKey(documents, tokenizer)}.i32`);
  const cached = readCachedStream(path, tokenizer.vocabSize);
  if (cached) return cached;
  const stream = tokenStream(documents, tokenizer);
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, new Uint8Array(stream.buffer, stream.byteOffset, stream.byteLength));
    renameSync(tmp, path);
  } catch {
    // A cache that cannot be written only costs time; the stream itself is correct.
  }
  return stream;
}

/** The documents a spec names; Brown honours the split, files are used whole. */
export function specDocuments(spec: CalibSpec, split: Split): Effect.Effect<string[], TextSourceError> {
  switch (spec.source.kind) {
    case "brown":
      return Effect.map(loadBrownDocuments(split), (docs) => docs.map((d) => d.text));
    case "txt":
      return readTxtDocuments(spec.source.path);
    case "jsonl":
      return readJsonlDocuments(spec.source.path);
  }
}

/** Cut N seeded windows of T tokens out of a token stream. */
export function windowsFromStream(
  stream: Int32Array,
  n: number,
  seqLen: number,
  seed: number,
  source: string,
  documents: number,
): Effect.Effect<TokenWindows, NotEnoughTokensError> {
  if (n * seqLen > stream.length)
    return Effect.fail(new NotEnoughTokensError({ source, available: stream.length, needed: n * seqLen }));
  const starts = windowStarts(stream.length, n, seqLen, seed);
  const ids = new Int32Array(n * seqLen);
  starts.forEach((s, i) => {
    ids.set(stream.subarray(s, s + seqLen), i * seqLen);
  });
  const windows = starts.map((_, i) => ids.subarray(i * seqLen, (i + 1) * seqLen));
  return Effect.succeed({ n, seqLen, ids, windows, starts, streamTokens: stream.length, documents });
}

/**
 * Token windows for calibration ("calib") or evaluation ("eval"). Size precedence: the spec's
 * NxT, then `options`, then DEFAULT_WINDOWS[split].
 */
export function calibrationWindows(
  spec: CalibSpec,
  tokenizer: TextTokenizer,
  split: Split,
  options: WindowOptions = {},
): Effect.Effect<TokenWindows, TextSourceError | NotEnoughTokensError> {
  const n = spec.n ?? options.n ?? DEFAULT_WINDOWS[split].n;
  const seqLen = spec.seqLen ?? options.seqLen ?? DEFAULT_WINDOWS[split].seqLen;
  const source = spec.source.kind === "brown" ? `brown (${split} split)` : spec.source.path;
  return Effect.flatMap(specDocuments(spec, split), (docs) =>
    windowsFromStream(
      options.cacheDir ? cachedTokenStream(docs, tokenizer, options.cacheDir) : tokenStream(docs, tokenizer),
      n,
      seqLen,
      options.seed ?? 0,
      source,
      docs.length,
    ),
  );
}
