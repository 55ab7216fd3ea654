// An evaluator worker: takes `evaluate` items (one batch of windows each), scores the batch with
// the same evaluateCheckpoint forward the single-process evaluation runs, and hands the
// per-token scores back to the home host (`evaluated`). On another host it never opens a path
// of the home host: both models come through the file server and the object store.
import { join } from "node:path";
import { isPermanent, PermanentFailure, type Worker } from "@moeq/bus";
import { validate, type WorkItem } from "@moeq/contracts";
import type { TokenScores } from "@moeq/eval";
import { isPermanentError, type StageContext, writeFileAtomic } from "@moeq/runtime";
import { Result } from "effect";
import { fetchCheckpoint, localCheckpointDir } from "./checkpoint-files.ts";
import { evaluateCheckpoint } from "./evaluate.ts";
import { BatchScoresError, encodeTokenScores, idsFromBytes } from "./window-batches.ts";
import { EVALUATE_QUEUE, EVALUATED_QUEUE, EvaluateWindowsWork, scoredItemId } from "./window-work.ts";

const EVALUATION_ID = /^[a-z0-9-]{1,64}$/;
/** Bad input a retry cannot fix: the item is dead-lettered and the run fails, naming it. */
const INPUT_ERRORS = new Set([
  "ModelInputError",
  "EvalInputError",
  "BatchScoresError",
  "CheckpointFilesError",
  "HostRefused",
  "DescriptorRejected",
  "ChecksumMismatch",
]);

export async function scoreWindowsItem(ctx: StageContext, item: WorkItem, working: () => void): Promise<void> {
  const v = validate(EvaluateWindowsWork, item.payload, `work ${item.id}`);
  if (Result.isFailure(v)) throw new PermanentFailure({ tag: "InvalidMessage", message: v.failure.message });
  const p = v.success;
  const source = `evaluation ${p.evaluation} windows [${p.b0}, ${p.b0 + p.nb})`;
  if (!EVALUATION_ID.test(p.evaluation))
    throw new BatchScoresError({ source, message: `${source}: evaluation id must match ${EVALUATION_ID}` });
  if (p.nb < 1 || p.seqLen < 2)
    throw new BatchScoresError({
      source,
      message: `${source}: need ≥ 1 window of ≥ 2 tokens, got ${p.nb}×${p.seqLen}`,
    });
  if (p.ids.dtype !== "i32" || p.ids.shape.length !== 2 || p.ids.shape[0] !== p.nb || p.ids.shape[1] !== p.seqLen)
    throw new BatchScoresError({
      source,
      message: `${source}: ids must be i32[${p.nb}, ${p.seqLen}], got ${p.ids.dtype}[${p.ids.shape}]`,
    });
  const host = await ctx.host();
  const ids = idsFromBytes(
    ctx.reader.bytes(await host.readable(p.ids, `${source} ids`), `${source} ids`),
    p.nb,
    p.seqLen,
    `${source} ids`,
  );
  const fetch = async (d: Parameters<typeof host.readable>[0], what: string) =>
    ctx.reader.bytes(await host.readable(d, what), what);
  const cache = join(ctx.workDir, "eval-models");
  const [referenceDir, quantizedDir] = ctx.remote
    ? [
        await fetchCheckpoint(p.reference, cache, fetch, `${source} reference`, working),
        await fetchCheckpoint(p.quantized, cache, fetch, `${source} checkpoint`, working),
      ]
    : [localCheckpointDir(p.reference, `${source} reference`), localCheckpointDir(p.quantized, `${source} checkpoint`)];
  working();
  let tokens: TokenScores | undefined;
  const ev = await evaluateCheckpoint({
    ...p.forward,
    referenceDir,
    quantizedDir,
    texts: ctx.options.eval,
    seed: ctx.options.seed,
    batchWindows: p.nb,
    windows: { n: p.nb, seqLen: p.seqLen, ids },
    layerErrors: p.layerErrors,
    onBatchScored: (_, s) => {
      tokens = s;
    },
  });
  if (!tokens) throw new BatchScoresError({ source, message: `${source}: the batch produced no scores` });
  const bytes = encodeTokenScores(tokens);
  const scores = await host.output(
    `eval/${p.evaluation}/b${p.b0}.scores`,
    "u8",
    [bytes.byteLength],
    bytes,
    writeFileAtomic,
  );
  await ctx.queues.publish(EVALUATED_QUEUE, {
    id: scoredItemId(ctx.runId, p.evaluation, p.b0),
    runId: ctx.runId,
    kind: "windows-scored",
    payload: {
      evaluation: p.evaluation,
      b0: p.b0,
      nb: p.nb,
      host: ctx.hostId,
      scores,
      ...(p.layerErrors ? { layers: ev.layers } : {}),
    },
  });
  ctx.say(`scored windows [${p.b0}, ${p.b0 + p.nb}) of evaluation ${p.evaluation}`);
}

/** Consumes the run's `evaluate` queue until stopped (a remote worker: until the run ends). */
export function serveWindowWork(ctx: StageContext): Promise<Worker> {
  return ctx.queues.consume(
    EVALUATE_QUEUE,
    async (item, wctx) => {
      try {
        await scoreWindowsItem(ctx, item, wctx.working);
      } catch (e) {
        const tag = (e as { _tag?: string })._tag ?? "Error";
        if (isPermanentError(e) || isPermanent(e) || INPUT_ERRORS.has(tag)) {
          const error = { tag, message: (e as Error).message };
          await ctx.emit({ type: "RunFailed", payload: { stage: ctx.stage, error } }).catch(() => undefined);
          throw e instanceof PermanentFailure ? e : new PermanentFailure({ tag, message: error.message });
        }
        throw e;
      }
    },
    { heartbeatMs: 5000, onRetry: (item, e) => ctx.say(`retrying ${item.id}: ${(e as Error).message}`) },
  );
}
