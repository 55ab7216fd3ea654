// Token windows for calibration and evaluation. Text specs go through @moeq/data (the model's
// tokenizer.json, Brown split, files); `random:NxT` gives seeded uniform token ids, for
// synthesized models that have no tokenizer (random weights make text meaningless anyway).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { calibrationWindows, loadTokenizer, parseCalibSpec, type Split, seededRandom } from "@moeq/data";
import { Cause, Effect, Exit } from "effect";
import { OptionsError } from "./errors.ts";

export interface Windows {
  readonly n: number;
  readonly seqLen: number;
  /** [n, seqLen] row-major */
  readonly ids: Int32Array;
}

const RANDOM = /^random:(\d+)x(\d+)$/;

export function randomWindows(n: number, seqLen: number, vocab: number, seed: number): Windows {
  const rand = seededRandom(seed ^ 0x5eed);
  const ids = new Int32Array(n * seqLen);
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(rand() * vocab);
  return { n, seqLen, ids };
}

/** Windows for `spec` from `split`; throws OptionsError / @moeq/data's typed errors. */
export async function tokenWindows(
  spec: string,
  split: Split,
  o: { modelDir: string; vocab: number; seed: number; cacheDir?: string },
): Promise<Windows> {
  const m = RANDOM.exec(spec);
  if (m) {
    const n = Number(m[1]);
    const seqLen = Number(m[2]);
    if (n < 1 || seqLen < 2) throw new OptionsError({ field: split, message: `${spec}: need N ≥ 1 and T ≥ 2` });
    // Different streams for calib and eval so the evaluation is on tokens calibration never saw.
    return randomWindows(n, seqLen, o.vocab, o.seed + (split === "eval" ? 1_000_003 : 0));
  }
  if (!existsSync(join(o.modelDir, "tokenizer.json")))
    throw new OptionsError({
      field: split,
      message: `${spec}: ${join(o.modelDir, "tokenizer.json")} does not exist; use random:NxT for a model without a tokenizer`,
    });
  const exit = await Effect.runPromiseExit(
    Effect.gen(function* () {
      const tokenizer = yield* loadTokenizer(o.modelDir);
      const parsed = yield* parseCalibSpec(spec);
      const w = yield* calibrationWindows(parsed, tokenizer, split, {
        seed: o.seed,
        ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}),
      });
      return { n: w.n, seqLen: w.seqLen, ids: w.ids };
    }),
  );
  if (Exit.isFailure(exit)) throw Cause.squash(exit.cause);
  return exit.value;
}
