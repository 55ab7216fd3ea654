// `moeq eval <reference-dir> <quantized-dir> [--texts spec] [--json]`: the evaluator's logic as a
// command: KLD statistics of the quantized checkpoint (read back through its format's decoder)
// against the reference on held-out text, plus report.json/html when --report is given.
import { resolve } from "node:path";
import { formatKldTable } from "@moeq/eval";
import { evaluateCheckpoint, reportData, writeRunReport } from "@moeq/stage-evaluator";
import { Effect, Option } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { resolveModelRef, stderrLine } from "../model-ref.ts";
import { userError } from "./quantize.ts";

export const evalCommand = Command.make(
  "eval",
  {
    referenceDir: Argument.String("reference-dir").pipe(
      Argument.withDescription("The unquantized model: a directory or a Hugging Face id org/name[@revision]"),
    ),
    quantizedDir: Argument.String("quantized-dir").pipe(
      Argument.withDescription("A quantized checkpoint (any supported format)"),
    ),
    texts: Flag.String("texts").pipe(
      Flag.withDefault("brown:64x256"),
      Flag.withDescription("Evaluation text (brown[:NxT] = held-out split, file.txt|jsonl, random:NxT)"),
    ),
    seed: Flag.Int("seed").pipe(Flag.withDefault(0)),
    batchWindows: Flag.Int("batch-windows").pipe(Flag.withDefault(16)),
    report: Flag.String("report").pipe(
      Flag.optional,
      Flag.withDescription("Write report.json + report.html into this directory"),
    ),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("Print the statistics as JSON")),
    weightsOnly: Flag.Boolean("weights-only").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        "Keep activations f32 (score only the weights); by default linear inputs are quantized as the checkpoint states (W8A8-FP8 input_scale, NVFP4 W4A4, dynamic FP8)",
      ),
    ),
    expertInputScales: Flag.Literals("expert-input-scales", ["per-expert", "layer-max"]).pipe(
      Flag.withDefault("per-expert"),
      Flag.withDescription(
        "Experts' static input scales: each expert's own, or the layer's max (vLLM's fused FP8 MoE)",
      ),
    ),
  },
  (a) =>
    Effect.tryPromise({
      try: async () => {
        const ev = await evaluateCheckpoint({
          referenceDir: resolve(await resolveModelRef(a.referenceDir, { log: stderrLine })),
          quantizedDir: resolve(a.quantizedDir),
          texts: a.texts,
          seed: a.seed,
          batchWindows: a.batchWindows,
          activations: a.weightsOnly ? "weights-only" : "quantized",
          expertInputScales: a.expertInputScales,
        });
        const reportDir = Option.getOrUndefined(a.report);
        if (reportDir) {
          const layers = ev.layers.length;
          const experts = Math.max(1, ...ev.expertWeightErrors.map((x) => x.expert + 1));
          await writeRunReport(
            resolve(reportDir),
            reportData({
              title: `moeq eval ${a.quantizedDir}`,
              modelName: a.referenceDir,
              source: a.referenceDir,
              layers,
              experts,
              settings: { texts: a.texts, seed: a.seed, format: ev.format },
              evaluation: ev,
              timings: [{ stage: "evaluation", seconds: ev.seconds }],
            }),
          );
        }
        if (a.json) process.stdout.write(`${JSON.stringify(ev, null, 2)}\n`);
        else
          process.stdout.write(
            `${ev.format}, ${ev.quantizedModules} quantized modules, ${ev.windows.n}×${ev.windows.seqLen} tokens, ${ev.seconds.toFixed(1)} s\nactivations: ${ev.activations.summary}\n${formatKldTable(ev.kld)}\n`,
          );
      },
      catch: (e) => e,
    }).pipe(Effect.catch(userError("eval"))),
).pipe(Command.withDescription("KL divergence of a quantized checkpoint vs its reference on held-out text"));
