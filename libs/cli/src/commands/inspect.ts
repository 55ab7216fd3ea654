// `moeq inspect <model-dir> [--json]`: what the registry makes of a checkpoint — architecture,
// layers (which are MoE), experts, top-k, parameter counts, bytes by dtype, quantizable tensors.
import { loadModel, type ModelSummary, summarize } from "@moeq/models";
import { Console, Effect } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { resolveModelRef, stderrLine } from "../model-ref.ts";

const human = (n: number) =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)} G`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(2)} M`
      : n >= 1e3
        ? `${(n / 1e3).toFixed(1)} k`
        : `${n}`;

/** The warning inspect and quantize give for checkpoint tensors the forward pass never reads. */
export const unusedLine = (names: readonly string[]): string =>
  `unused       ${names.length} checkpoint tensor(s) the configured model never reads — copied unchanged, not quantized: ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", …" : ""}`;

function render(dir: string, s: ModelSummary): string {
  const lines = [
    `model        ${dir}`,
    `architecture ${s.modelType} (${s.difficulty})${s.architectureNote ? ` — ${s.architectureNote}` : ""}`,
    `layers       ${s.numLayers} (MoE: ${s.moeLayers.length ? s.moeLayers.join(",") : "none"}; dense: ${s.denseLayers.length ? s.denseLayers.join(",") : "none"})`,
    `hidden       ${s.hiddenSize}, vocab ${s.vocabSize}`,
    `experts      ${s.experts ?? "-"}, top-k ${s.topK ?? "-"}, routing ${s.routing ?? "-"}, shared expert ${s.sharedExperts ? "yes" : "no"}`,
    `parameters   ${human(s.parameters.checkpoint)} in checkpoint, ${human(s.parameters.model)} used by the forward pass, ${human(s.parameters.activePerToken)} active per token`,
    `bytes        ${Object.entries(s.bytesByDtype)
      .map(([d, b]) => `${d} ${human(b)}B`)
      .join(", ")}`,
    `quantizable  ${s.quantizable.tensors} tensors, ${human(s.quantizable.parameters)} parameters (router, shared-expert gate, norms, biases, embeddings, lm_head excluded)`,
  ];
  if (s.unusedTensors.length > 0) lines.push(unusedLine(s.unusedTensors));
  return lines.join("\n");
}

export const inspect = Command.make(
  "inspect",
  {
    modelDir: Argument.String("model-dir").pipe(
      Argument.withDescription("Model directory (config.json + safetensors) or Hugging Face id org/name[@revision]"),
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Print the summary as JSON (includes the quantizable tensor names)"),
    ),
  },
  ({ modelDir, json }) =>
    Effect.gen(function* () {
      const dir = yield* Effect.tryPromise({
        try: () => resolveModelRef(modelDir, { log: stderrLine }),
        catch: (e) => e as Error,
      });
      const summary = yield* Effect.try({
        try: () => {
          const m = loadModel(dir);
          try {
            return summarize(m);
          } finally {
            m.close();
          }
        },
        catch: (e) => e as Error,
      });
      yield* Console.log(json ? JSON.stringify({ modelDir: dir, ...summary }, null, 2) : render(dir, summary));
    }).pipe(
      // A user error (bad directory, unsupported architecture, bad ids) is one line on stderr and
      // exit status 1, not a stack trace.
      Effect.catch((e) =>
        Effect.sync(() => {
          process.stderr.write(`moeq inspect: ${e instanceof Error ? e.message : String(e)}\n`);
          process.exitCode = 1;
        }),
      ),
    ),
).pipe(Command.withDescription("Describe a model: architecture, MoE layers, experts, parameters, quantizable tensors"));
