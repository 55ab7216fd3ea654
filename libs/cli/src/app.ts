// The `moeq` command tree. Each subcommand lives in ./commands/<name>.ts and is added here.
import { Command } from "effect/cli";
import { forward } from "./commands/forward.ts";
import { inspect } from "./commands/inspect.ts";
import { selftest } from "./commands/selftest.ts";

export const moeq = Command.make("moeq").pipe(
  Command.withDescription("Quantize Mixture-of-Experts models with every expert calibrated on the data it will see."),
  Command.withSubcommands([inspect, forward, selftest]),
);
