// `moeq resume <work-dir>`: continue an interrupted run from its events (the embedded server is
// restarted on the run's JetStream store; stages replay the log and skip finished work).
import { resolve } from "node:path";
import { Effect, Option } from "effect";
import { Argument, Command, Flag } from "effect/cli";
import { runAndReport, userError } from "./quantize.ts";

export const resume = Command.make(
  "resume",
  {
    workDir: Argument.String("work-dir").pipe(Argument.withDescription("The run's work dir (holds run.json)")),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("Print the summary as JSON")),
    traceFile: Flag.String("trace-file").pipe(
      Flag.optional,
      Flag.withDescription("Append every process's spans to this OTLP JSON-lines file"),
    ),
  },
  ({ workDir, json, traceFile }) =>
    Effect.tryPromise({
      try: () => runAndReport(resolve(workDir), json, Option.getOrUndefined(traceFile)),
      catch: (e) => e,
    }).pipe(Effect.asVoid, Effect.catch(userError("resume"))),
).pipe(Command.withDescription("Continue an interrupted run from its events"));
