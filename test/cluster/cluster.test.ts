// Multi-host runs on one machine: seven network namespaces stand for seven hosts — three NATS
// nodes (one JetStream cluster, R3 streams), the home host (supervisor, work dir, model, every
// stage but the quantizer), two worker hosts that run only quantizers and one that runs an
// evaluator worker (the evaluation is distributed: every batch of windows is scored there).
// The workers cannot see the work dir or the model (a private tmpfs is mounted over the test's
// directory in their mount namespace), so every tensor and model file they read or write goes
// through the home host's file server and the object store. Mid-run one NATS node and one
// quantizer worker are SIGKILLed; the run must still complete with shards byte-identical to a
// single-host run and exactly its KLD statistics, every item quantized exactly once in the log,
// and nothing dead-lettered. The single-host run evaluates through the same queue (its evaluator
// scores the batches itself) and `moeq eval` evaluates its checkpoint in one process: all three
// statistics are equal bit for bit.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { moeq, shardHashes, tempDir } from "../helpers.ts";
import { startClusterForHome, startHomeRun } from "./home-run.ts";
import { assertNetnsWorks, sweepStaleNamespaces, TestNet } from "./netns.ts";
import {
  cliMain,
  dumpRunOn,
  onWorkerHost,
  quantizedCount,
  startRemoteEvaluator,
  startRemoteQuantizer,
  track,
  waitUntil,
  writeRemoteQuantizerGraph,
} from "./remote.ts";

// two batches of two evaluation windows: the distributed evaluation has two items
const QUANT = [
  ...["--algo", "gptq", "--calib", "random:8x32", "--eval", "random:4x32", "--batch-windows", "2"],
  ...["--threads", "1"],
];
const kldOf = (workDir: string) => {
  const r = JSON.parse(readFileSync(join(workDir, "report", "report.json"), "utf8")) as {
    kld: unknown;
    layers: unknown;
  };
  // JSON keeps every double exactly (shortest round-trip form): equal text = equal bits
  return { kld: JSON.stringify(r.kld), layers: JSON.stringify(r.layers) };
};

describe("a run across simulated hosts (network namespaces)", () => {
  let dir: string; // hidden from the worker hosts
  let secrets: string; // visible to every host: configs and the workers' nkey seed
  let model: string;
  let refOut: string;
  let refKld: ReturnType<typeof kldOf>;
  let net: TestNet | undefined;

  beforeAll(async () => {
    assertNetnsWorks();
    sweepStaleNamespaces();
    dir = tempDir("cluster");
    secrets = tempDir("cluster-etc");
    model = join(dir, "model");
    const s = await moeq(["synth", "--arch", "qwen3_moe", "--preset", "tiny", "--layers", "2", "--out", model]);
    expect(s.code, s.stderr).toBe(0);
    refOut = join(dir, "ref");
    const refGraph = join(secrets, "ref-graph.json");
    const names = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"];
    const stages = names.map((name) => (name === "evaluator" ? { name, options: { distribute: true } } : { name }));
    writeFileSync(refGraph, JSON.stringify({ version: 1, stages }));
    // --keep-artifacts: its quantizer outputs list every item the clustered run must log once
    const r = await moeq(["quantize", model, "--out", refOut, "--graph", refGraph, "--json", "--keep-artifacts", ...QUANT]);
    expect(r.code, r.stderr).toBe(0);
    refKld = kldOf(join(dir, "ref.moeq-work"));
    const scored = readFileSync(join(dir, "ref.moeq-work", "logs", "evaluator.0.log"), "utf8").match(/ scored on /g);
    expect(scored?.length, "the single-host evaluator scores both batches through the queue").toBe(2);
    // the same checkpoint evaluated in one process, with the stages' BLAS threads (--threads 1)
    const e = track(
      spawn(
        process.execPath,
        [cliMain, "eval", model, refOut, "--texts", "random:4x32", "--batch-windows", "2", "--json"],
        {
          env: { ...process.env, OPENBLAS_NUM_THREADS: "1" },
          stdio: ["ignore", "pipe", "pipe"],
        },
      ),
    );
    expect(await e.exit, e.out).toBe(0);
    const single = JSON.parse(e.stdout) as { kld: unknown; layers: unknown };
    expect(refKld).toEqual({ kld: JSON.stringify(single.kld), layers: JSON.stringify(single.layers) });
  }, 240_000);

  afterAll(() => {
    net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (secrets) rmSync(secrets, { recursive: true, force: true });
  }, 60_000);

  it("completes with two remote quantizers and a remote evaluator while a NATS node and a worker are killed; shards and KLD match the single-host run", async () => {
    net = TestNet.create(["nats1", "nats2", "nats3", "home", "w1", "w2", "e1"]);
    // The home host authenticates with user/password, the workers with their nkey.
    const home = await startClusterForHome(net, secrets);
    const { cluster, creds, homeEnv } = home;

    const graph = join(secrets, "graph.json");
    // every batch of evaluation windows goes to the evaluator worker on e1
    writeRemoteQuantizerGraph(graph, 6000, { distribute: true, homeWorker: false, ackWaitMs: 6000 });
    const out = join(dir, "out");
    const workDir = join(dir, "work");
    const { supervisor, runId } = await startHomeRun(net, home, { model, out, workDir, graph, args: QUANT });

    const worker = { seeds: cluster.seeds, creds, runId, hideDir: dir };
    const seen = track(onWorkerHost(net, "w1", ["sh", "-c", `ls -A "${dir}" | wc -l`], worker));
    expect(await seen.exit).toBe(0);
    expect(seen.out.trim(), "a worker host must not see the home host's files").toBe("0");

    const workers = new Map(["w1", "w2"].map((h) => [h, startRemoteQuantizer(net!, h, worker)]));
    const evaluator = startRemoteEvaluator(net, "e1", worker);
    const done = (h: string) => quantizedCount(workers.get(h)!);
    const logs = () =>
      [
        `--- supervisor\n${supervisor.out.slice(-3000)}`,
        ...[...workers].map(([h, p]) => `--- ${h}\n${p.out.slice(-3000)}`),
        `--- e1 (evaluator)\n${evaluator.out.slice(-3000)}`,
        ...(existsSync(join(workDir, "logs")) ? readdirSync(join(workDir, "logs")) : []).map(
          (f) => `--- ${f}\n${readFileSync(join(workDir, "logs", f), "utf8").slice(-1500)}`,
        ),
        ...cluster.nodes.map(
          (n) =>
            `--- ${n.name}\n${n.log
              .split("\n")
              .filter((l) => /WRN|ERR|leader/.test(l))
              .slice(-15)
              .join("\n")}`,
        ),
      ].join("\n");

    const early = () => [...workers, ["e1", evaluator] as const].find(([, p]) => p.child.exitCode !== null);
    await waitUntil(
      "both workers to quantize items",
      () => (done("w1") >= 12 && done("w2") >= 1) || early() !== undefined,
      120_000,
      logs,
    );
    expect(early(), `a worker exited before the faults were injected:\n${logs()}`).toBeUndefined();
    cluster.kill("n1");
    workers.get("w1")!.child.kill("SIGKILL");
    const w1Done = done("w1");

    const code = await Promise.race([supervisor.exit, sleep(360_000).then(() => "timeout" as const)]);
    expect(code, logs()).toBe(0);
    expect((JSON.parse(supervisor.stdout) as { status: string }).status).toBe("completed");
    expect(await workers.get("w2")!.exit, "the surviving worker leaves when the run ends").toBe(0);
    expect(await evaluator.exit, "the evaluator worker leaves when the run ends").toBe(0);
    expect(done("w2")).toBeGreaterThan(0);
    expect(w1Done).toBeGreaterThanOrEqual(12);

    expect(Object.keys(shardHashes(out)).length).toBeGreaterThan(0);
    expect(shardHashes(out)).toEqual(shardHashes(refOut));
    // The evaluation, scored on e1 from model files it fetched through the object store: the
    // single-host run's statistics exactly.
    expect(kldOf(workDir)).toEqual(refKld);
    expect((evaluator.out.match(/ scored windows \[/g) ?? []).length).toBe(2);

    // The log, read back from the surviving nodes: every item exactly once, none dead-lettered.
    const run = await dumpRunOn(net, "home", runId, homeEnv);
    const keys = run.events.filter((e) => e.type === "ExpertQuantized").map((e) => e.key!);
    const refItems = readdirSync(join(dir, "ref.moeq-work", "tensors", "quant"))
      .filter((f) => f.endsWith(".codes"))
      .map((f) => f.slice(0, -".codes".length))
      .sort();
    expect(refItems.length).toBe(2 * 32 * 3);
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort()).toEqual(refItems);
    expect(run.deadLetters).toBe(0);
    expect(Object.values(run.replicas)).toEqual([3, 3, 3]);
    const quantizerHosts = new Set(
      run.events.filter((e) => e.type === "StageStarted" && e.stage === "quantizer").map((e) => e.host),
    );
    expect(quantizerHosts).toEqual(new Set(["w1", "w2"]));
    const evaluatorHosts = run.events
      .filter((e) => e.type === "StageStarted" && e.stage === "evaluator")
      .map((e) => e.host);
    expect(new Set(evaluatorHosts)).toEqual(new Set(["home", "e1"]));
    expect(run.events.find((e) => e.type === "EvaluationCompleted")?.scoredBy).toEqual({ e1: 2 });
    // The remote workers' outputs were imported into the home host's work dir.
    for (const e of run.events.filter((x) => x.type === "ExpertQuantized"))
      for (const f of e.files!) expect(f.startsWith(join(workDir, "tensors", "quant"))).toBe(true);
  }, 600_000);
});
