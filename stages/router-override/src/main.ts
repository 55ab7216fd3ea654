#!/usr/bin/env node
import { runStage } from "@moeq/runtime";
import { runRouter } from "./router.ts";

await runStage({ name: "router-override", version: "0.1.0", run: runRouter });
