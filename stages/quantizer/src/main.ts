#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runQuantizer } from "./quantizer.ts";

await runStage({ name: "quantizer", version: "0.1.0", run: runQuantizer });
