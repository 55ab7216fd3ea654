// The evaluator's distributable unit: one batch of evaluation windows, exactly as the
// single-process loop cuts them (same first window, same count). A batch's forward depends on
// its shape, so scoring the same cut elsewhere gives the same logits bit for bit; its per-token
// values (KLD, same-top, −ln q_t, −ln p_t) are all the KLD accumulator keeps of a token, and
// adding them in batch order repeats the single-process sums exactly.
import { createHash } from "node:crypto";
import type { LayerStats, TokenScores } from "@moeq/eval";
import type { Windows } from "@moeq/runtime";
import { Data } from "effect";

export interface WindowBatch {
  /** index of the batch's first window in the evaluation */
  readonly b0: number;
  readonly nb: number;
  readonly seqLen: number;
  /** [nb, seqLen] token ids */
  readonly ids: Int32Array;
}

export interface BatchScores {
  readonly tokens: TokenScores;
  /** per-layer MoE output error, measured on the evaluation's first batch only */
  readonly layers?: LayerStats[];
}

/** Malformed scores or windows of a batch (names the batch and the field). */
export class BatchScoresError extends Data.TaggedError("BatchScoresError")<{
  readonly source: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

/** The batches of the evaluation loop: windows [b0, b0 + nb) for b0 = 0, batch, 2·batch, ... */
export function windowBatches(w: Windows, batch: number): WindowBatch[] {
  const out: WindowBatch[] = [];
  for (let b0 = 0; b0 < w.n; b0 += batch) {
    const nb = Math.min(batch, w.n - b0);
    out.push({ b0, nb, seqLen: w.seqLen, ids: w.ids.subarray(b0 * w.seqLen, (b0 + nb) * w.seqLen) });
  }
  return out;
}

// Layout: u32 rows, u8 flags (1: targets), 3 bytes padding, then kld f64[rows], and with targets
// nll f64[rows], nllBase f64[rows]; then sameTop u8[rows]. Little-endian, f64 bit patterns as is.
const HEADER = 8;

export function encodeTokenScores(s: TokenScores): Uint8Array {
  const rows = s.kld.length;
  const withTargets = s.nll !== null && s.nllBase !== null;
  const f64s = withTargets ? 3 : 1;
  const out = new Uint8Array(HEADER + f64s * 8 * rows + rows);
  const view = new DataView(out.buffer);
  view.setUint32(0, rows, true);
  out[4] = withTargets ? 1 : 0;
  const put = (a: Float64Array, at: number) => {
    for (let i = 0; i < rows; i++) view.setFloat64(at + 8 * i, a[i], true);
  };
  put(s.kld, HEADER);
  if (withTargets) {
    put(s.nll!, HEADER + 8 * rows);
    put(s.nllBase!, HEADER + 16 * rows);
  }
  out.set(s.sameTop, HEADER + f64s * 8 * rows);
  return out;
}

/** Reads what encodeTokenScores wrote; BatchScoresError naming `source` on any inconsistency. */
export function decodeTokenScores(bytes: Uint8Array, source: string, expectRows?: number): TokenScores {
  const bad = (message: string) => new BatchScoresError({ source, message: `${source}: ${message}` });
  if (bytes.byteLength < HEADER) throw bad(`${bytes.byteLength} bytes, shorter than the ${HEADER}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rows = view.getUint32(0, true);
  const flags = bytes[4];
  if (flags > 1) throw bad(`unknown flags ${flags}`);
  const f64s = flags === 1 ? 3 : 1;
  const want = HEADER + f64s * 8 * rows + rows;
  if (bytes.byteLength !== want) throw bad(`${bytes.byteLength} bytes, ${rows} rows need ${want}`);
  if (expectRows !== undefined && rows !== expectRows) throw bad(`${rows} scored tokens, the batch has ${expectRows}`);
  const get = (at: number) => {
    const a = new Float64Array(rows);
    for (let i = 0; i < rows; i++) a[i] = view.getFloat64(at + 8 * i, true);
    return a;
  };
  const sameTop = bytes.slice(HEADER + f64s * 8 * rows, want);
  for (let i = 0; i < rows; i++) if (sameTop[i] > 1) throw bad(`sameTop[${i}] is ${sameTop[i]}, not 0 or 1`);
  return {
    kld: get(HEADER),
    sameTop,
    nll: flags === 1 ? get(HEADER + 8 * rows) : null,
    nllBase: flags === 1 ? get(HEADER + 16 * rows) : null,
  };
}

export const idsBytes = (ids: Int32Array): Uint8Array => {
  const out = new Uint8Array(ids.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) view.setInt32(4 * i, ids[i], true);
  return out;
};

export function idsFromBytes(bytes: Uint8Array, nb: number, seqLen: number, source: string): Int32Array {
  if (bytes.byteLength !== nb * seqLen * 4)
    throw new BatchScoresError({
      source,
      message: `${source}: ${bytes.byteLength} bytes of token ids, ${nb}×${seqLen} windows need ${nb * seqLen * 4}`,
    });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids = new Int32Array(nb * seqLen);
  for (let i = 0; i < ids.length; i++) ids[i] = view.getInt32(4 * i, true);
  return ids;
}

export const sha256Hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
