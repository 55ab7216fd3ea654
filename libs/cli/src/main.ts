#!/usr/bin/env node
import { NodeRuntime, NodeServices } from "@effect/platform-node";
import { Effect } from "effect";
import { Command } from "effect/cli";
import { moeq } from "./app.ts";
import { moeqVersion } from "./version.ts";

Command.run(moeq, { version: moeqVersion }).pipe(Effect.provide(NodeServices.layer), NodeRuntime.runMain);
