#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runEvaluator } from "./evaluator.ts";

await runStage({ name: "evaluator", version: "0.1.0", run: runEvaluator });
