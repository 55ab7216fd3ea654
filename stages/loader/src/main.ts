#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runLoader } from "./loader.ts";

await runStage({ name: "loader", version: "0.1.0", run: runLoader });
