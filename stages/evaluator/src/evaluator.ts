// The evaluator stage: once the packer is done, evaluates the packed checkpoint against the
// source model on the held-out windows, writes report.json/html into the work dir's report/
// and appends EvaluationCompleted with the KLD statistics.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isFloatScheme, type StageContext, stageSpans } from "@moeq/runtime";
import { telemetry as tracing } from "@moeq/runtime";
import { distributeWindows } from "./distribute-windows.ts";
import { evaluateCheckpoint } from "./evaluate.ts";
import { type ExpertRunStats, reportData, writeRunReport } from "./report.ts";
import { serveWindowWork } from "./window-worker.ts";

export async function runEvaluator(ctx: StageContext): Promise<void> {
  // A worker on another host: scores batches of windows until the run ends (runStage exits it).
  if (ctx.remote) {
    await serveWindowWork(ctx);
    ctx.say("consuming evaluate work");
    return new Promise<never>(() => undefined);
  }
  if (ctx.find("EvaluationCompleted")) return;
  const packed = await ctx.waitFor("CheckpointPacked");
  const opened = await ctx.waitFor("ModelOpened");
  const o = ctx.options;
  ctx.say(`evaluating ${packed.payload.dir}`);
  await ctx.pause();
  // graph option distribute: batches of windows go to evaluator workers (any host) through the
  // `evaluate` queue and come back as per-token scores, merged in order (docs/cluster.md)
  const so = ctx.stageOptions;
  const distribution =
    so.distribute === true
      ? await distributeWindows(ctx, {
          referenceDir: ctx.modelDir,
          quantizedDir: packed.payload.dir,
          ackWaitMs: typeof so.ackWaitMs === "number" && so.ackWaitMs >= 1000 ? so.ackWaitMs : undefined,
          homeWorker: so.homeWorker !== false,
        })
      : undefined;
  const evaluate = (): ReturnType<typeof evaluateCheckpoint> => evaluateCheckpoint({
    referenceDir: ctx.modelDir,
    quantizedDir: packed.payload.dir,
    texts: o.eval,
    seed: o.seed,
    batchWindows: o.batchWindows,
    cacheDir: ctx.paths.cache,
    onProgress: (d, n) => ctx.say(`evaluated ${d}/${n} windows`),
    scoreElsewhere: distribution?.scoreElsewhere,
  });
  // the whole checkpoint at once: no layer/expert above it; its loss is the mean KLD
  const evaluation = await tracing.projectionSpan("evaluate", {}, async (span) => {
    const ev = await evaluate();
    tracing.setWork(span, { loss: ev.kld.kld.mean });
    return ev;
  }).finally(() => distribution?.stop());
  const E = Math.max(1, ...opened.payload.expertsPerLayer);
  const planned = ctx.all("RoutingPlanned");
  const seconds = new Map<string, number>();
  for (const q of ctx.all("ExpertQuantized")) {
    const k = `${q.payload.layer}/${q.payload.expert}`;
    seconds.set(k, (seconds.get(k) ?? 0) + q.payload.seconds);
  }
  const expertRuns: ExpertRunStats[] = planned.flatMap((p) =>
    p.payload.coverage.map((c) => ({ layer: p.payload.layer, expert: c.expert, routedTokens: c.tokensRouted, calibWeightMass: c.weightMass, seconds: seconds.get(`${p.payload.layer}/${c.expert}`) ?? 0, calibration: c.calibration })),
  );
  // experts quantized without a calibration plan (RTN): their time, no calibration numbers
  const covered = new Set(expertRuns.map((r) => `${r.layer}/${r.expert}`));
  for (const [k, s] of seconds)
    if (!covered.has(k)) {
      const [layer, expert] = k.split("/").map(Number);
      expertRuns.push({ layer, expert, routedTokens: Number.NaN, calibWeightMass: Number.NaN, seconds: s });
    }
  // the packer's notes (input-scale fallbacks of experts without calibration tokens, scale dtypes)
  const packJson = join(ctx.paths.report, "pack.json");
  const packNotes: string[] = existsSync(packJson) ? (JSON.parse(readFileSync(packJson, "utf8")).notes ?? []) : [];
  const float = isFloatScheme(o.scheme ?? "w4a16");
  const data = reportData({
    title: float
      ? `moeq ${o.scheme} → ${o.format} (${o.targets})`
      : `moeq ${o.algorithm.toUpperCase()} W${o.bits} g${o.groupSize} ${o.symmetric ? "sym" : "asym"} (${o.targets})`,
    modelName: opened.payload.arch,
    source: ctx.modelDir,
    layers: opened.payload.layers,
    experts: E,
    topK: opened.payload.topK,
    settings: {
      algorithm: o.algorithm,
      bits: o.bits,
      groupSize: o.groupSize,
      symmetric: o.symmetric,
      // the policy the router actually used (a graph may set it for its router)
      policy: planned[0]?.payload.policy ?? o.policy,
      zeroTokenFallback: o.zeroTokenFallback ?? "rtn",
      calib: o.calib,
      eval: o.eval,
      targets: o.targets,
      propagate: o.propagate,
      seed: o.seed,
      format: o.format,
      scheme: o.scheme ?? "w4a16",
      ...(packNotes.length ? { packNotes: packNotes.join("; ") } : {}),
    },
    evaluation,
    expertRuns,
    // every stage's span in the run's events so far; the evaluator's own runs until this report
    timings: [...stageSpans(ctx.events)].map(([stage, { from, to }]) => ({
      stage,
      seconds: ((stage === ctx.stage ? Date.now() : to) - from) / 1000,
    })),
    remedy: o.algorithm === "gptq" ? (o.zeroTokenFallback && o.zeroTokenFallback !== "rtn" ? `policy ${o.zeroTokenFallback}, else RTN` : "RTN fallback") : undefined,
    minTokens: o.minExpertTokens || opened.payload.hiddenSize,
  });
  const dir = await writeRunReport(ctx.paths.report, data);
  await ctx.emit({
    type: "EvaluationCompleted",
    payload: {
      stats: {
        kld: evaluation.kld as unknown as Record<string, unknown>,
        layers: evaluation.layers,
        windows: evaluation.windows,
        reportDir: dir,
        seconds: evaluation.seconds,
        ...(distribution ? { scoredBy: Object.fromEntries(distribution.scoredBy) } : {}),
      },
    },
  });
  ctx.say(`mean KLD ${evaluation.kld.kld.mean.toFixed(5)} over ${evaluation.kld.tokens} tokens; report in ${dir}`);
}
