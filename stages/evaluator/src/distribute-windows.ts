// The home side of a distributed evaluation (evaluator stage option `distribute`): every batch of
// windows becomes an `evaluate` item for evaluator workers on any host (and, unless
// `homeWorker: false`, this process itself); their per-token scores come back on `evaluated`
// and evaluateCheckpoint adds them in batch order, so the statistics are those of a
// single-process evaluation bit for bit. Each evaluation attempt has its own id: a restarted
// evaluator publishes again and ignores what workers still return for the previous attempt.
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { PermanentFailure, type Worker } from "@moeq/bus";
import { type TensorDescriptor, validate } from "@moeq/contracts";
import type { LayerStats } from "@moeq/eval";
import { type StageContext, writeFileAtomic } from "@moeq/runtime";
import { Result } from "effect";
import { checkpointFiles, linkInto } from "./checkpoint-files.ts";
import type { EvaluateOptions } from "./evaluate.ts";
import {
  type BatchScores,
  BatchScoresError,
  decodeTokenScores,
  idsBytes,
  sha256Hex,
  type WindowBatch,
} from "./window-batches.ts";
import { EVALUATE_QUEUE, EVALUATED_QUEUE, evaluateItemId, forwardOptions, WindowsScored } from "./window-work.ts";
import { serveWindowWork } from "./window-worker.ts";

export interface DistributeOptions {
  readonly referenceDir: string;
  readonly quantizedDir: string;
  /** how soon the item of a worker that died is handed to another (default 120 s; above the 5 s heartbeat) */
  readonly ackWaitMs?: number;
  /** this process also scores batches (default true: the evaluation finishes without any other worker) */
  readonly homeWorker?: boolean;
}

export interface WindowDistribution {
  readonly evaluation: string;
  /** for EvaluateOptions.scoreElsewhere */
  scoreElsewhere(batches: readonly WindowBatch[], o: EvaluateOptions): Promise<BatchScores>[];
  /** batches merged, per host that scored them */
  readonly scoredBy: ReadonlyMap<string, number>;
  stop(): Promise<void>;
}

interface Pending {
  readonly batch: WindowBatch;
  readonly promise: Promise<BatchScores>;
  resolve(s: BatchScores): void;
  reject(e: unknown): void;
  settled: boolean;
}

function pendingFor(batch: WindowBatch): Pending {
  let resolve!: (s: BatchScores) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<BatchScores>((a, b) => {
    resolve = a;
    reject = b;
  });
  // evaluateCheckpoint awaits them in order; a later batch failing first must not count as unhandled
  promise.catch(() => undefined);
  const p: Pending = {
    batch,
    promise,
    settled: false,
    resolve: (s) => {
      p.settled = true;
      resolve(s);
    },
    reject: (e) => {
      p.settled = true;
      reject(e);
    },
  };
  return p;
}

export async function distributeWindows(ctx: StageContext, o: DistributeOptions): Promise<WindowDistribution> {
  const evaluation = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  const scratch = join(ctx.workDir, "eval", evaluation);
  const tensorsDir = join(ctx.workDir, "tensors", "eval", evaluation);
  const reference = checkpointFiles(o.referenceDir);
  // The output dir is not one the home host's file server exports; the work dir is.
  const quantized = checkpointFiles(linkInto(o.quantizedDir, join(scratch, "checkpoint")));
  await ctx.queues.ensureQueue(EVALUATE_QUEUE, { ackWaitMs: o.ackWaitMs ?? 120_000, maxDeliver: 5 });
  await ctx.queues.ensureQueue(EVALUATED_QUEUE, {});
  const pending = new Map<number, Pending>();
  const scoredBy = new Map<string, number>();
  const failAll = (e: unknown) => {
    for (const p of pending.values()) if (!p.settled) p.reject(e);
  };

  const results = await ctx.queues.consume(EVALUATED_QUEUE, async (item) => {
    const v = validate(WindowsScored, item.payload, `result ${item.id}`);
    if (Result.isFailure(v)) {
      failAll(new BatchScoresError({ source: item.id, message: v.failure.message }));
      throw new PermanentFailure({ tag: "InvalidMessage", message: v.failure.message });
    }
    const r = v.success;
    const p = pending.get(r.b0);
    // another attempt's result, or a batch already merged (a redelivered item done twice)
    if (r.evaluation !== evaluation || !p || p.settled) return;
    const source = `evaluation ${evaluation} windows [${r.b0}, ${r.b0 + r.nb}) from ${r.host}`;
    try {
      if (r.nb !== p.batch.nb)
        throw new BatchScoresError({ source, message: `${source}: ${r.nb} windows, the batch has ${p.batch.nb}` });
      const bytes = ctx.reader.bytes(r.scores, `${source} scores`);
      if (r.scores.checksum && sha256Hex(bytes) !== r.scores.checksum.hex)
        throw new BatchScoresError({ source, message: `${source}: scores do not hash to ${r.scores.checksum.hex}` });
      const tokens = decodeTokenScores(bytes, `${source} scores`, p.batch.nb * (p.batch.seqLen - 1));
      p.resolve({ tokens, ...(r.layers ? { layers: r.layers as LayerStats[] } : {}) });
      scoredBy.set(r.host, (scoredBy.get(r.host) ?? 0) + 1);
      ctx.say(`windows [${r.b0}, ${r.b0 + r.nb}) scored on ${r.host}`);
    } catch (e) {
      p.reject(e);
    }
  });
  let homeWorker: Worker | undefined;
  try {
    if (o.homeWorker !== false) homeWorker = await serveWindowWork(ctx);
  } catch (e) {
    await results.stop();
    throw e;
  }

  const publish = async (b: WindowBatch, forward: Record<string, string | number | boolean>) => {
    const bytes = idsBytes(b.ids);
    const path = join(tensorsDir, `b${b.b0}.ids`);
    writeFileAtomic(path, bytes);
    const ids: TensorDescriptor = {
      dtype: "i32",
      shape: [b.nb, b.seqLen],
      loc: { kind: "file", path, offset: 0, bytes: bytes.byteLength },
      checksum: { algo: "sha256", hex: sha256Hex(bytes) },
    };
    await ctx.queues.publish(EVALUATE_QUEUE, {
      id: evaluateItemId(ctx.runId, evaluation, b.b0),
      runId: ctx.runId,
      kind: "evaluate-windows",
      payload: {
        evaluation,
        b0: b.b0,
        nb: b.nb,
        seqLen: b.seqLen,
        ids,
        layerErrors: b.b0 === 0,
        reference,
        quantized,
        forward,
      },
    });
  };

  return {
    evaluation,
    scoredBy,
    scoreElsewhere: (batches, options) => {
      const forward = forwardOptions(options);
      for (const b of batches) pending.set(b.b0, pendingFor(b));
      void (async () => {
        for (const b of batches) await publish(b, forward);
        ctx.say(`evaluation ${evaluation}: ${batches.length} batches queued for evaluator workers`);
      })().catch(failAll);
      return batches.map((b) => pending.get(b.b0)!.promise);
    },
    stop: async () => {
      await Promise.all([results.stop(), homeWorker?.stop()]);
      rmSync(scratch, { recursive: true, force: true });
      rmSync(tensorsDir, { recursive: true, force: true });
    },
  };
}
