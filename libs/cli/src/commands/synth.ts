// `moeq synth --arch qwen3_moe --preset tiny|tiny4x|qwen3-30b-a3b [--layers N] --out <dir>`.
import { Console, Effect, Option } from "effect";
import { Command, Flag } from "effect/cli";
import { PRESETS, synthArchitectures, synthesize } from "../supervisor/synth-model.ts";
import { userError } from "./quantize.ts";

export const synth = Command.make(
  "synth",
  {
    arch: Flag.String("arch").pipe(
      Flag.withDefault("qwen3_moe"),
      Flag.withDescription(`Architecture (${synthArchitectures.join(", ")})`),
    ),
    preset: Flag.String("preset").pipe(
      Flag.withDefault("tiny"),
      Flag.withDescription(`Shape: ${Object.keys(PRESETS).join(", ")}`),
    ),
    layers: Flag.Int("layers").pipe(Flag.optional, Flag.withDescription("Number of layers (default: the preset's)")),
    seed: Flag.Int("seed").pipe(Flag.withDefault(0), Flag.withDescription("Weight seed")),
    out: Flag.String("out").pipe(Flag.withDescription("Output model directory")),
  },
  (a) =>
    Effect.try({
      try: () =>
        synthesize({
          arch: a.arch,
          preset: a.preset,
          layers: Option.getOrUndefined(a.layers),
          seed: a.seed,
          out: a.out,
        }),
      catch: (e) => e,
    }).pipe(
      Effect.flatMap((r) =>
        Console.log(
          `synthesized ${a.arch}/${a.preset}: ${r.tensors} tensors, ${(r.bytes / 1e6).toFixed(1)} MB in ${r.shards} shard(s) → ${r.dir}`,
        ),
      ),
      Effect.catch(userError("synth")),
    ),
).pipe(Command.withDescription("Write a random-weight checkpoint with a real architecture's on-disk layout"));
