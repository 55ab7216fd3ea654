// `moeq study`: every (calibration size, policy) of the grid quantized and scored, in this
// process (no bus): one forward pass per calibration size collects every policy's statistics
// (collect.ts), each policy's checkpoint is written like the packer's and scored by the
// evaluator's evaluateCheckpoint on the same held-out windows.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { loadModel } from "@moeq/models";
import { runPaths, targetKey } from "@moeq/runtime";
import { evaluateCheckpoint } from "@moeq/stage-evaluator";
import {
  type CalibrationPolicy,
  type Coverage,
  type CoverageDigest,
  digestCoverage,
  parsePolicy,
  withZeroTokenFallback,
} from "@moeq/stage-router-override";
import { writePolicyCheckpoint } from "./checkpoint.ts";
import { collectAndQuantize, expertTargets, loadWeight, type QuantSettings, rtnQuantize } from "./collect.ts";
import { type CalibSize, calibSpec } from "./grid.ts";

export interface StudyOptions {
  readonly modelDir: string;
  /** policy specs; `rtn` = no calibration (one row) */
  readonly policies: readonly string[];
  readonly calibSizes: readonly CalibSize[];
  /** calibration text without a size: brown, random, file.txt, file.jsonl */
  readonly calibText: string;
  readonly eval: string;
  readonly quant: QuantSettings;
  readonly seed: number;
  readonly batchWindows: number;
  readonly zeroTokenFallback: string;
  /** coverage threshold of routed tokens (0: the hidden size) */
  readonly minExpertTokens: number;
  /** scratch space for the checkpoints being scored */
  readonly workDir: string;
  readonly keepCheckpoints?: boolean;
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

export interface StudyCell {
  readonly policy: string;
  /** calibration size label, or "-" for rtn */
  readonly calib: string;
  readonly calibTokens: number;
  readonly kld: { readonly mean: number; readonly uncertainty: number; readonly p99: number; readonly max: number };
  readonly sameTop: number;
  readonly perplexityRatio: number | null;
  /** summed over MoE layers; null for rtn */
  readonly coverage: (CoverageDigest & { readonly layers: number }) | null;
  readonly rtnFallbacks: number;
  /** the policy's statistics cost summed over MoE layers (null for rtn): seconds and rows used */
  readonly statistics: { readonly seconds: number; readonly rows: number } | null;
  readonly seconds: number;
  readonly checkpoint?: string;
}

export interface StudyResult {
  readonly model: string;
  readonly arch: string;
  readonly settings: Record<string, string | number | boolean>;
  readonly evalTokens: number;
  readonly minTokens: number;
  readonly cells: StudyCell[];
  readonly seconds: number;
}

function sumDigests(ds: CoverageDigest[]): CoverageDigest & { layers: number } {
  return {
    layers: ds.length,
    experts: ds.reduce((s, d) => s + d.experts, 0),
    unrouted: ds.reduce((s, d) => s + d.unrouted, 0),
    belowMin: ds.reduce((s, d) => s + d.belowMin, 0),
    uncalibrated: ds.reduce((s, d) => s + d.uncalibrated, 0),
    routedOnly: ds.reduce((s, d) => s + d.routedOnly, 0),
    blended: ds.reduce((s, d) => s + d.blended, 0),
    minRouted: Math.min(...ds.map((d) => d.minRouted)),
    minUsed: Math.min(...ds.map((d) => d.minUsed)),
    minEss: Math.min(...ds.map((d) => d.minEss)),
    medianEss: ds.map((d) => d.medianEss).sort((a, b) => a - b)[Math.floor((ds.length - 1) / 2)] ?? 0,
  };
}

const slug = (s: string) => s.replace(/[^A-Za-z0-9.-]+/g, "_").slice(0, 60);

export async function runStudy(o: StudyOptions): Promise<StudyResult> {
  const t0 = Date.now();
  const log = o.log ?? (() => {});
  const model = loadModel(o.modelDir);
  const minTokens = o.minExpertTokens || model.spec.hiddenSize;
  const cacheDir = o.cacheDir ?? runPaths(o.workDir).cache;
  mkdirSync(o.workDir, { recursive: true });
  const cells: StudyCell[] = [];
  let evalTokens = 0;
  const score = async (
    policy: string,
    calib: string,
    calibTokens: number,
    modules: Parameters<typeof writePolicyCheckpoint>[2],
    cov: Map<number, Coverage[]> | null,
    rtnFallbacks: number,
    statistics: { seconds: number; rows: number } | null,
  ) => {
    const t1 = Date.now();
    const dir = join(o.workDir, `${slug(calib)}-${slug(policy)}`);
    rmSync(dir, { recursive: true, force: true });
    writePolicyCheckpoint(dir, model, modules, o.quant);
    const ev = await evaluateCheckpoint({
      referenceDir: o.modelDir,
      quantizedDir: dir,
      texts: o.eval,
      seed: o.seed,
      batchWindows: o.batchWindows,
      cacheDir,
    });
    if (!o.keepCheckpoints) rmSync(dir, { recursive: true, force: true });
    evalTokens = ev.kld.tokens;
    const k = ev.kld;
    const cell: StudyCell = {
      policy,
      calib,
      calibTokens,
      kld: { mean: k.kld.mean, uncertainty: k.kld.uncertainty, p99: k.kld.p99, max: k.kld.max },
      sameTop: k.sameTop.value,
      perplexityRatio: k.perplexity ? k.perplexity.pplRatio.value : null,
      coverage: cov ? sumDigests([...cov.values()].map((c) => digestCoverage(c, minTokens))) : null,
      rtnFallbacks,
      statistics,
      seconds: (Date.now() - t1) / 1000,
      ...(o.keepCheckpoints ? { checkpoint: dir } : {}),
    };
    cells.push(cell);
    log(
      `${policy} @ ${calib}: mean KLD ${cell.kld.mean.toFixed(5)}, p99 ${cell.kld.p99.toFixed(4)}, same-top ${(cell.sameTop * 100).toFixed(2)}% (${cell.seconds.toFixed(1)} s to score)`,
    );
  };

  if (o.policies.includes("rtn")) {
    const modules = new Map(
      expertTargets(model).map((t) => [targetKey(t), rtnQuantize(model, loadWeight(model, t), t, o.quant)] as const),
    );
    await score("rtn", "-", 0, modules, null, 0, null);
  }
  const specs = o.policies.filter((p) => p !== "rtn");
  for (const size of o.calibSizes) {
    if (specs.length === 0) break;
    const fallback =
      o.zeroTokenFallback === "rtn"
        ? "rtn"
        : parsePolicy(o.zeroTokenFallback, { scratchDir: join(o.workDir, "policy"), log });
    const policies: CalibrationPolicy[] = specs.map((s) =>
      withZeroTokenFallback(parsePolicy(s, { scratchDir: join(o.workDir, "policy"), log }), fallback),
    );
    const calib = calibSpec(o.calibText, size);
    const t1 = Date.now();
    let collected: Awaited<ReturnType<typeof collectAndQuantize>>;
    try {
      collected = await collectAndQuantize({
        model,
        calib,
        seed: o.seed,
        batchWindows: o.batchWindows,
        cacheDir,
        policies,
        quant: o.quant,
        log,
      });
    } finally {
      for (const p of policies) await p.close?.();
    }
    log(
      `${calib}: statistics and ${o.quant.algorithm.toUpperCase()} for ${policies.length} policies in ${((Date.now() - t1) / 1000).toFixed(1)} s`,
    );
    for (const run of collected.runs)
      log(
        `${calib}: ${run.policy} statistics ${run.statistics.seconds.toFixed(2)} s, ${run.statistics.rows} expert rows`,
      );
    for (const run of collected.runs)
      await score(
        run.policy,
        size.label,
        collected.tokens,
        run.modules,
        run.coverage,
        run.rtnFallbacks.length,
        run.statistics,
      );
  }
  if (!o.keepCheckpoints && existsSync(join(o.workDir, "policy")))
    rmSync(join(o.workDir, "policy"), { recursive: true, force: true });
  model.close();
  return {
    model: o.modelDir,
    arch: model.spec.modelType,
    settings: {
      algorithm: o.quant.algorithm,
      bits: o.quant.bits,
      groupSize: o.quant.groupSize,
      symmetric: o.quant.symmetric,
      damp: o.quant.damp,
      actOrder: o.quant.actOrder,
      targets: "experts",
      propagate: "fp",
      calib: o.calibText,
      eval: o.eval,
      seed: o.seed,
      zeroTokenFallback: o.zeroTokenFallback,
    },
    evalTokens,
    minTokens,
    cells,
    seconds: (Date.now() - t0) / 1000,
  };
}
