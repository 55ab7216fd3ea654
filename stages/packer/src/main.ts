#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runPacker } from "./packer.ts";

await runStage({ name: "packer", version: "0.1.0", run: runPacker });
