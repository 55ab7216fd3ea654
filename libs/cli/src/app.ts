// The `moeq` command tree. Each subcommand lives in ./commands/<name>.ts and is added here.
import { Command } from "effect/cli";
import { evalCommand } from "./commands/eval.ts";
import { forward } from "./commands/forward.ts";
import { graph } from "./commands/graph.ts";
import { inspect } from "./commands/inspect.ts";
import { quantize } from "./commands/quantize.ts";
import { resume } from "./commands/resume.ts";
import { selftest } from "./commands/selftest.ts";
import { study } from "./commands/study.ts";
import { synth } from "./commands/synth.ts";

export const moeq = Command.make("moeq").pipe(
  Command.withDescription("Quantize Mixture-of-Experts models with every expert calibrated on the data it will see."),
  Command.withSubcommands([inspect, forward, selftest, quantize, resume, synth, graph, evalCommand, study]),
);
