#!/usr/bin/env node
import { constants } from "node:os";
import { NodeRuntime, NodeServices } from "@effect/platform-node";
import { Effect, Runtime } from "effect";
import { Command } from "effect/cli";
import { moeq } from "./app.ts";
import { moeqVersion } from "./version.ts";

// A command stopped by a signal exits as the shell expects, 128 + the signal's number (SIGINT
// 130, SIGTERM 143); the runtime's default says 130 for any interruption.
let stoppedBy: "SIGINT" | "SIGTERM" | undefined;
for (const s of ["SIGINT", "SIGTERM"] as const)
  process.prependListener(s, () => {
    stoppedBy ??= s;
  });

NodeRuntime.runMain(Command.run(moeq, { version: moeqVersion }).pipe(Effect.provide(NodeServices.layer)), {
  teardown: (exit, onExit) =>
    Runtime.defaultTeardown(exit, (code) =>
      onExit(code === 130 && stoppedBy ? 128 + constants.signals[stoppedBy] : code),
    ),
});
