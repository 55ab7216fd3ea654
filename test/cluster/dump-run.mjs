#!/usr/bin/env node
// Prints a run's events (type, key-ish fields, stage, host) and dead letters as JSON, read from
// the cluster the test's hosts use. Usage (inside a test host): node dump-run.mjs <runId> | --ready
// with MOEQ_NATS_URL and credentials in the environment.
import { clusterOptionsFromEnv, connectBus, RunEventLog, RunWorkQueues } from "@moeq/bus";

const runId = process.argv[2];
const bus = await connectBus({ url: process.env.MOEQ_NATS_URL, name: "dump-run", ...clusterOptionsFromEnv() });
if (runId === "--ready") {
  // Waits until the cluster's JetStream answers API calls (a meta leader is elected and known).
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await bus.jsm.getAccountInfo();
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await bus.nc.drain();
  process.exit(0);
}
// Right after a server of the cluster died, creating the ordered consumer that reads the log can
// time out until the survivors have settled: retry for up to a minute.
const retry = async (what, f) => {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i >= 12) throw new Error(`${what}: ${e.message}`);
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
};
const log = await retry("open the event log", () => RunEventLog.open(bus, runId));
const events = (await retry("read the event log", () => log.read(1))).map((e) => ({
  seq: e.seq,
  type: e.type,
  time: e.time,
  stage: e.stage,
  ...(e.type === "ExpertQuantized"
    ? {
        key: `L${e.payload.layer}.E${e.payload.expert}.${e.payload.proj}`,
        files: Object.values(e.payload.outputs).map((d) => (d.loc.kind === "file" ? d.loc.path : d.loc.kind)),
      }
    : {}),
  ...(e.type === "StageStarted" ? { host: e.payload.host, instance: e.payload.instance } : {}),
  ...(e.type === "EvaluationCompleted" ? { scoredBy: e.payload.stats.scoredBy } : {}),
}));
const dead = await retry("read the dead letters", async () => (await RunWorkQueues.open(bus, runId)).deadLetters());
const replicas = {};
for (const s of [`MOEQ_${runId}`, `MOEQ_${runId}_WORK`, `MOEQ_${runId}_DLQ`])
  replicas[s] = (await retry(`info of ${s}`, () => bus.jsm.streams.info(s))).config.num_replicas;
process.stdout.write(`${JSON.stringify({ events, deadLetters: dead.length, replicas })}\n`);
await bus.nc.drain();
