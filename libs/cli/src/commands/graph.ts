// `moeq graph validate <file>` / `moeq graph show`: check a graph file (stages, manifests,
// commands, replicas) or print the built-in one.
import { Console, Effect } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { defaultGraph, readGraphFile, resolveGraph } from "../supervisor/graph.ts";
import { userError } from "./quantize.ts";

const validateCmd = Command.make(
  "validate",
  { file: Argument.String("file").pipe(Argument.withDescription("Graph file (JSON or YAML)")) },
  ({ file }) =>
    Effect.try({ try: () => resolveGraph(readGraphFile(file)), catch: (e) => e }).pipe(
      Effect.flatMap((stages) =>
        Console.log(
          [
            `${file}: valid graph with ${stages.length} stages`,
            ...stages.map(
              (s) =>
                `  ${s.name.padEnd(16)} ×${s.replicas}  ${s.command.join(" ")}${Object.keys(s.options).length ? `  ${JSON.stringify(s.options)}` : ""}`,
            ),
          ].join("\n"),
        ),
      ),
      Effect.catch(userError("graph validate")),
    ),
).pipe(Command.withDescription("Validate a graph file"));

const showCmd = Command.make(
  "show",
  { quantizers: Flag.Int("quantizers").pipe(Flag.withDefault(2)) },
  ({ quantizers }) => Console.log(JSON.stringify(defaultGraph(quantizers), null, 2)),
).pipe(Command.withDescription("Print the built-in graph"));

export const graph = Command.make("graph").pipe(
  Command.withDescription("Stage graphs"),
  Command.withSubcommands([validateCmd, showCmd]),
);
