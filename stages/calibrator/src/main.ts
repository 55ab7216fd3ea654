#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runCalibrator } from "./calibrator.ts";

await runStage({ name: "calibrator", version: "0.1.0", run: runCalibrator });
