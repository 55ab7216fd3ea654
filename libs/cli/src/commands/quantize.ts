// `moeq quantize <model-dir> --out <dir>`: validate everything, create the run's work dir, start
// the stage graph over NATS and print the summary. Exit status 0 when the run completed.

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { clusterOptionsFromEnv, connectBus } from "@moeq/bus";
import {
  DEFAULT_OPTIONS,
  OptionsError,
  type RunInfo,
  type RunOptions,
  resolveOptions,
  runPaths,
  tokenWindows,
  writeFileAtomic,
  writeRunInfo,
} from "@moeq/runtime";
import { Effect, Option } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { resolveModelRef, stderrLine } from "../model-ref.ts";
import { defaultGraph, readGraphFile, resolveGraph } from "../supervisor/graph.ts";
import { formatSummary, type RunSummary } from "../supervisor/summary.ts";
import { defaultThreads, supervise } from "../supervisor/supervise.ts";
import { type Preflight, preflight } from "../supervisor/validate.ts";
import { unusedLine } from "./inspect.ts";

export interface QuantizeArgs {
  readonly modelDir: string;
  readonly out: string;
  readonly workDir?: string;
  readonly graph?: string;
  readonly nats?: string;
  readonly threads?: number;
  readonly options: Partial<Record<keyof RunOptions, unknown>>;
  /** the command line recorded for the model card (default: this process's arguments) */
  readonly command?: readonly string[];
}

/** Defaults that depend on the model: a model without tokenizer.json gets random token windows. */
export function modelDefaults(modelDir: string, given: Partial<Record<keyof RunOptions, unknown>>) {
  if (existsSync(join(modelDir, "tokenizer.json"))) return given;
  return {
    calib: "random:64x128",
    eval: "random:16x128",
    ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
  };
}

/**
 * The token windows of user-given text (files) and random specs, cut now as the stages will cut
 * them: an empty, binary or too-short file fails here, naming it, instead of minutes into the run
 * (or after packing, for --eval). Brown is shipped and its sizes are checked by the loader.
 */
async function checkWindows(pre: Preflight, o: RunOptions): Promise<void> {
  for (const [split, spec] of [
    ["calib", o.calib],
    ["eval", o.eval],
  ] as const) {
    if (spec.startsWith("brown")) continue;
    try {
      await tokenWindows(spec, split, { modelDir: pre.modelDir, vocab: pre.vocab, seed: o.seed });
    } catch (e) {
      throw new OptionsError({ field: split, message: `--${split}: ${(e as Error).message}` });
    }
  }
}

/** An external NATS (--nats) that cannot be reached fails now, not in every stage after the run is created. */
async function checkNats(url: string): Promise<void> {
  try {
    const bus = await connectBus({ url, name: "moeq-preflight", attempts: 3, ...clusterOptionsFromEnv() });
    await bus.nc.close();
  } catch (e) {
    throw new OptionsError({ field: "nats", message: `--nats ${url}: ${(e as Error).message}` });
  }
}

/** Creates the run (validated, work dir + run.json) and returns its work dir; nothing is written on error. */
export async function createRun(a: QuantizeArgs): Promise<string> {
  const options = resolveOptions(modelDefaults(a.modelDir, a.options));
  const pre = preflight(a.modelDir, a.out, a.workDir, options);
  await checkWindows(pre, options);
  if (pre.architectureNote) process.stderr.write(`moeq quantize: ${pre.architectureNote}\n`);
  if (pre.unusedTensors.length > 0) process.stderr.write(`moeq quantize: ${unusedLine(pre.unusedTensors)}\n`);
  if (a.nats) await checkNats(a.nats);
  const graph = a.graph ? readGraphFile(a.graph) : defaultGraph(options.quantizers);
  const stages = resolveGraph(graph);
  const info: RunInfo = {
    runId: `r${Date.now().toString(36)}${randomBytes(3).toString("hex")}`,
    modelDir: pre.modelDir,
    outDir: pre.outDir,
    options,
    graph,
    commands: Object.fromEntries(stages.map((s) => [s.name, s.command])),
    stageOptions: Object.fromEntries(stages.map((s) => [s.name, s.options])),
    replicas: Object.fromEntries(stages.map((s) => [s.name, s.replicas])),
    ...(a.nats ? { natsUrl: a.nats } : {}),
    threads: a.threads ?? defaultThreads(),
    createdAt: new Date().toISOString(),
    command: a.command ?? process.argv.slice(2),
  };
  mkdirSync(pre.workDir, { recursive: true });
  writeRunInfo(pre.workDir, info);
  // what the pre-flight check assumed, beside what the summary measures
  writeFileAtomic(join(runPaths(pre.workDir).report, "estimate.json"), `${JSON.stringify(pre.estimate, null, 2)}\n`);
  return pre.workDir;
}

export async function runAndReport(workDir: string, json: boolean, traceFile?: string): Promise<RunSummary> {
  const tty = !json && Boolean(process.stdout.isTTY);
  const summary = await supervise({
    workDir,
    traceFile,
    tty,
    write: (s) => (json ? process.stderr.write(s) : process.stdout.write(s)),
  });
  process.stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : `\n${formatSummary(summary)}\n`);
  if (summary.status !== "completed") process.exitCode = 1;
  return summary;
}

const opt = <A>(o: Option.Option<A>) => Option.getOrUndefined(o);

export const userError = (command: string) => (e: unknown) =>
  Effect.sync(() => {
    process.stderr.write(
      `moeq ${command}: ${e instanceof Error || (e as { message?: string })?.message ? (e as Error).message : String(e)}\n`,
    );
    process.exitCode = 1;
  });

export const quantize = Command.make(
  "quantize",
  {
    modelDir: Argument.String("model-dir").pipe(
      Argument.withDescription("Model directory (config.json + safetensors) or Hugging Face id org/name[@revision]"),
    ),
    out: Flag.String("out").pipe(Flag.withDescription("Output checkpoint directory (must not exist)")),
    // optional: given or not is what tells a contradiction with --scheme from a default
    bits: Flag.Int("bits").pipe(Flag.optional, Flag.withDescription("Weight bits of int schemes: 4 or 8 (default 4)")),
    groupSize: Flag.Int("group-size").pipe(
      Flag.optional,
      Flag.withDescription("Input columns per scale group of int schemes (-1: per channel; default 32)"),
    ),
    asymmetric: Flag.Boolean("asymmetric").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Asymmetric (zero point) instead of symmetric"),
    ),
    algo: Flag.Literals("algo", ["gptq", "rtn"]).pipe(
      Flag.withDefault("gptq"),
      Flag.withDescription("Quantization algorithm"),
    ),
    policy: Flag.String("policy").pipe(
      Flag.withDefault(DEFAULT_OPTIONS.policy),
      Flag.withDescription(
        "Calibration policy: default (= topup[:N]), routed, all, soft, soft2, routed-w2, fill:N, mix:λ, external:<command> (docs/calibration.md)",
      ),
    ),
    zeroTokenFallback: Flag.String("zero-token-fallback").pipe(
      Flag.withDefault("rtn"),
      Flag.withDescription("Experts the policy gives no token: rtn, or a policy that calibrates them"),
    ),
    minExpertTokens: Flag.Int("min-expert-tokens").pipe(
      Flag.withDefault(0),
      Flag.withDescription("Warn about experts with fewer routed tokens (0: the hidden size)"),
    ),
    calib: Flag.String("calib").pipe(
      Flag.optional,
      Flag.withDescription(
        "Calibration text: brown[:NxT] (default brown:128x256), file.txt|file.jsonl[:NxT], random:NxT",
      ),
    ),
    evalTexts: Flag.String("eval").pipe(
      Flag.optional,
      Flag.withDescription("Evaluation text (default brown:64x256, the held-out split)"),
    ),
    targets: Flag.Literals("targets", ["experts", "experts+attention", "all-linear"]).pipe(
      Flag.withDefault("experts"),
      Flag.withDescription("What to quantize"),
    ),
    propagate: Flag.Literals("propagate", ["fp", "quantized"]).pipe(
      Flag.withDefault("fp"),
      Flag.withDescription("What flows to the next layer during calibration"),
    ),
    quantizers: Flag.Int("quantizers").pipe(
      Flag.withDefault(2),
      Flag.withDescription("Quantizer replicas of the default graph"),
    ),
    seed: Flag.Int("seed").pipe(Flag.withDefault(0), Flag.withDescription("Seed of the window placement")),
    damp: Flag.Finite("damp").pipe(
      Flag.withDefault(0.01),
      Flag.withDescription("GPTQ dampening (fraction of mean diag H)"),
    ),
    actOrder: Flag.Boolean("act-order").pipe(Flag.withDefault(false), Flag.withDescription("GPTQ activation order")),
    batchWindows: Flag.Int("batch-windows").pipe(
      Flag.withDefault(16),
      Flag.withDescription("Windows per forward batch"),
    ),
    threads: Flag.Int("threads").pipe(
      Flag.optional,
      Flag.withDescription("BLAS threads per stage process (default min(4, cores))"),
    ),
    nats: Flag.String("nats").pipe(Flag.optional, Flag.withDescription("NATS URL (default: an embedded nats-server)")),
    graph: Flag.String("graph").pipe(
      Flag.optional,
      Flag.withDescription("Graph file (JSON or YAML) choosing each stage's implementation"),
    ),
    workDir: Flag.String("work-dir").pipe(
      Flag.optional,
      Flag.withDescription("Run directory (default <out>.moeq-work)"),
    ),
    device: Flag.String("device").pipe(
      Flag.withDefault("cpu"),
      Flag.withDescription("Where Hessians and GPTQ run: cpu, cuda or cuda:N (a CUDA build of @moeq/native)"),
    ),
    scheme: Flag.String("scheme").pipe(
      Flag.optional,
      Flag.withDescription("w4a16|w8a16|fp8|fp8-channel|fp8-block|w8a8-fp8|nvfp4|mxfp4 (default: int per --bits)"),
    ),
    format: Flag.String("format").pipe(
      Flag.withDefault("compressed-tensors"),
      Flag.withDescription("compressed-tensors|gptq|gptq-v2|modelopt|fp8-block|gpt-oss-mxfp4 (docs/formats.md)"),
    ),
    keepArtifacts: Flag.Boolean("keep-artifacts").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Keep every layer's work-dir artifacts (default: deleted once the layer is packed)"),
    ),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("Print the summary as JSON")),
    traceFile: Flag.String("trace-file").pipe(
      Flag.optional,
      Flag.withDescription("Append every process's spans to this OTLP JSON-lines file (docs/tracing.md)"),
    ),
  },
  (a) =>
    Effect.tryPromise({
      try: async () => {
        const workDir = await createRun({
          modelDir: await resolveModelRef(a.modelDir, { log: stderrLine }),
          out: a.out,
          workDir: opt(a.workDir),
          graph: opt(a.graph),
          nats: opt(a.nats),
          threads: opt(a.threads),
          options: {
            bits: opt(a.bits),
            groupSize: opt(a.groupSize),
            symmetric: !a.asymmetric,
            algorithm: a.algo,
            policy: a.policy,
            zeroTokenFallback: a.zeroTokenFallback,
            minExpertTokens: a.minExpertTokens,
            calib: opt(a.calib),
            eval: opt(a.evalTexts),
            targets: a.targets,
            propagate: a.propagate,
            quantizers: a.quantizers,
            seed: a.seed,
            damp: a.damp,
            actOrder: a.actOrder,
            batchWindows: a.batchWindows,
            device: a.device,
            scheme: opt(a.scheme),
            format: a.format,
            keepArtifacts: a.keepArtifacts,
          },
        });
        await runAndReport(workDir, a.json, opt(a.traceFile));
      },
      catch: (e) => e,
    }).pipe(Effect.catch(userError("quantize"))),
).pipe(Command.withDescription("Quantize a checkpoint with the stage pipeline; prints a summary with the KLD table"));
