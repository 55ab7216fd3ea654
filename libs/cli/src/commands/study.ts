// `moeq study <model-dir> --policies routed,all,soft,… --calib-sizes 16x256,128x256 --algo gptq`:
// the calibration-policy grid in this process (no bus), one KLD table with the coverage under
// each policy; --out also writes study.json and study.md.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveOptions, writeFileAtomic } from "@moeq/runtime";
import { formatStudyMarkdown, parseCalibSizes, parsePolicyList, runStudy } from "@moeq/study";
import { Effect, Option } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { userError } from "./quantize.ts";

export const DEFAULT_STUDY_POLICIES = "rtn,routed,all,soft,soft2,routed-w2,fill:256,mix:0.3,default";

const opt = <A>(o: Option.Option<A>) => Option.getOrUndefined(o);

export const study = Command.make(
  "study",
  {
    modelDir: Argument.String("model-dir").pipe(Argument.withDescription("Hugging Face model directory")),
    policies: Flag.String("policies").pipe(
      Flag.withDefault(DEFAULT_STUDY_POLICIES),
      Flag.withDescription("Comma-separated policies (rtn = uncalibrated baseline)"),
    ),
    calibSizes: Flag.String("calib-sizes").pipe(
      Flag.withDefault("16x256,128x256"),
      Flag.withDescription("Comma-separated calibration sizes NxT (windows × tokens)"),
    ),
    calib: Flag.String("calib").pipe(
      Flag.optional,
      Flag.withDescription(
        "Calibration text without size: brown (default), random (default without tokenizer.json), file.txt, file.jsonl",
      ),
    ),
    evalTexts: Flag.String("eval").pipe(
      Flag.optional,
      Flag.withDescription("Evaluation text (default brown:64x256; random:16x128 without tokenizer.json)"),
    ),
    algo: Flag.Literals("algo", ["gptq", "rtn"]).pipe(
      Flag.withDefault("gptq"),
      Flag.withDescription("Quantization algorithm"),
    ),
    bits: Flag.Int("bits").pipe(Flag.withDefault(4), Flag.withDescription("Weight bits: 4 or 8")),
    groupSize: Flag.Int("group-size").pipe(
      Flag.withDefault(32),
      Flag.withDescription("Input columns per scale group (-1: per channel)"),
    ),
    asymmetric: Flag.Boolean("asymmetric").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Asymmetric (zero point) instead of symmetric"),
    ),
    damp: Flag.Finite("damp").pipe(
      Flag.withDefault(0.01),
      Flag.withDescription("GPTQ dampening (fraction of mean diag H)"),
    ),
    actOrder: Flag.Boolean("act-order").pipe(Flag.withDefault(false), Flag.withDescription("GPTQ activation order")),
    seed: Flag.Int("seed").pipe(Flag.withDefault(0), Flag.withDescription("Seed of the window placement")),
    batchWindows: Flag.Int("batch-windows").pipe(
      Flag.withDefault(16),
      Flag.withDescription("Windows per forward batch"),
    ),
    zeroTokenFallback: Flag.String("zero-token-fallback").pipe(
      Flag.withDefault("rtn"),
      Flag.withDescription("Experts a policy gives no token: rtn, or a policy"),
    ),
    minExpertTokens: Flag.Int("min-expert-tokens").pipe(
      Flag.withDefault(0),
      Flag.withDescription("Coverage threshold of routed tokens (0: the hidden size)"),
    ),
    out: Flag.String("out").pipe(Flag.optional, Flag.withDescription("Directory for study.json and study.md")),
    workDir: Flag.String("work-dir").pipe(
      Flag.optional,
      Flag.withDescription("Scratch directory for the scored checkpoints (default: a temp dir)"),
    ),
    keepCheckpoints: Flag.Boolean("keep-checkpoints").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Keep every scored checkpoint in the work dir"),
    ),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("Print the result as JSON")),
  },
  (a) =>
    Effect.tryPromise({
      try: async () => {
        const tokenizer = existsSync(join(a.modelDir, "tokenizer.json"));
        if (!existsSync(join(a.modelDir, "config.json")))
          throw new Error(`${a.modelDir}: no config.json (not a model directory)`);
        const calibText = opt(a.calib) ?? (tokenizer ? "brown" : "random");
        const sizes = parseCalibSizes(a.calibSizes);
        const policies = parsePolicyList(a.policies);
        // the same validation as `moeq quantize`, so a study setting is always a valid run setting
        const o = resolveOptions({
          bits: a.bits,
          groupSize: a.groupSize,
          symmetric: !a.asymmetric,
          algorithm: a.algo,
          damp: a.damp,
          actOrder: a.actOrder,
          seed: a.seed,
          batchWindows: a.batchWindows,
          zeroTokenFallback: a.zeroTokenFallback,
          minExpertTokens: a.minExpertTokens,
          calib: `${calibText}:${sizes[0].label}`,
          eval: opt(a.evalTexts) ?? (tokenizer ? "brown:64x256" : "random:16x128"),
        });
        const given = opt(a.workDir);
        const workDir = given ?? mkdtempSync(join(tmpdir(), "moeq-study-"));
        const log = (l: string) => process.stderr.write(`${new Date().toISOString()} study ${l}\n`);
        try {
          const r = await runStudy({
            modelDir: a.modelDir,
            policies,
            calibSizes: sizes,
            calibText,
            eval: o.eval,
            quant: {
              algorithm: o.algorithm,
              bits: o.bits,
              groupSize: o.groupSize,
              symmetric: o.symmetric,
              damp: o.damp,
              actOrder: o.actOrder,
            },
            seed: o.seed,
            batchWindows: o.batchWindows,
            zeroTokenFallback: o.zeroTokenFallback,
            minExpertTokens: o.minExpertTokens,
            workDir,
            keepCheckpoints: a.keepCheckpoints,
            log,
          });
          const md = formatStudyMarkdown(r);
          const out = opt(a.out);
          if (out) {
            mkdirSync(out, { recursive: true });
            writeFileAtomic(join(out, "study.json"), `${JSON.stringify(r, null, 2)}\n`);
            writeFileAtomic(join(out, "study.md"), `${md}\n`);
          }
          process.stdout.write(
            a.json
              ? `${JSON.stringify(r, null, 2)}\n`
              : `${md}\n${out ? `\nwritten: ${join(out, "study.json")}, ${join(out, "study.md")}\n` : ""}`,
          );
        } finally {
          if (!given && !a.keepCheckpoints) rmSync(workDir, { recursive: true, force: true });
        }
      },
      catch: (e) => e,
    }).pipe(Effect.catch(userError("study"))),
).pipe(
  Command.withDescription(
    "Compare calibration policies × calibration sizes: one KLD table with per-policy expert coverage",
  ),
);
