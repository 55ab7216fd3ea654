// Pieces shared by the cluster test and benchmark: a graph whose quantizers all run on other
// hosts, quantizer and evaluator workers started on a simulated host that cannot see the home
// host's files, and process output capture. (Plain TypeScript without parameter properties: the benchmark runs
// it through Node's type stripping.)
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { ClusterCredentials } from "./nats-cluster.ts";
import type { TestNet } from "./netns.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const quantizerMain = join(root, "stages", "quantizer", "dist", "main.js");
export const evaluatorMain = join(root, "stages", "evaluator", "dist", "main.js");
export const dumpRun = join(root, "test", "cluster", "dump-run.mjs");
export const cliMain = join(root, "libs", "cli", "dist", "main.js");

export interface Proc {
  readonly child: ChildProcess;
  /** stdout and stderr, interleaved (last 400 kB) */
  out: string;
  stdout: string;
  readonly exit: Promise<number | null>;
}

export function track(child: ChildProcess): Proc {
  const p: Proc = { child, out: "", stdout: "", exit: new Promise((r) => child.once("exit", (code) => r(code))) };
  const on = (b: Buffer) => {
    p.out = (p.out + b.toString()).slice(-400_000);
  };
  child.stdout?.on("data", (b: Buffer) => {
    p.stdout += b.toString();
    on(b);
  });
  child.stderr?.on("data", on);
  return p;
}

export async function waitUntil(
  what: string,
  cond: () => boolean,
  timeoutMs: number,
  detail: () => string = () => "",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await sleep(50);
  }
}

/**
 * Every stage on the home host except the quantizers (replicas 0: they join from other hosts);
 * `evaluator` options may distribute the evaluation's windows to evaluator workers too.
 */
export function writeRemoteQuantizerGraph(path: string, ackWaitMs: number, evaluator: object = {}): void {
  const stage = (name: string, extra: object = {}) => ({ name, ...extra });
  writeFileSync(
    path,
    JSON.stringify({
      version: 1,
      stages: [
        stage("loader"),
        stage("router-override"),
        stage("calibrator"),
        stage("quantizer", { replicas: 0, options: { ackWaitMs } }),
        stage("packer"),
        stage("evaluator", { options: evaluator }),
      ],
    }),
  );
}

export interface WorkerHostOptions {
  readonly seeds: string;
  readonly creds: ClusterCredentials;
  readonly runId: string;
  /** hidden on the worker host behind an empty tmpfs (the home host's work dir and model live here) */
  readonly hideDir: string;
  readonly threads?: number;
  /** MOEQ_STAGE of the worker (default quantizer) */
  readonly stage?: string;
}

/** Runs `cmd` on a worker host: its own mount namespace with an empty tmpfs over `hideDir`. */
export function onWorkerHost(net: TestNet, host: string, cmd: readonly string[], o: WorkerHostOptions): ChildProcess {
  // OpenBLAS picks its kernels per CPU unless OPENBLAS_CORETYPE pins them (the dev machine sets it):
  // every host of a run must compute with the same ones, or the KLD differs in its last bits.
  const blas = Object.entries(process.env).filter(([k]) => k.startsWith("OPENBLAS_"));
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(blas),
    PATH: process.env.PATH,
    MOEQ_NATS_URL: o.seeds,
    MOEQ_NATS_NKEY_SEED_FILE: o.creds.nkeySeedFile,
    MOEQ_RUN_ID: o.runId,
    MOEQ_STAGE: o.stage ?? "quantizer",
    MOEQ_INSTANCE: host,
    OPENBLAS_NUM_THREADS: String(o.threads ?? 1),
    TMPDIR: o.hideDir,
  };
  return net.spawn(
    host,
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      'mount -t tmpfs moeq-elsewhere "$0" && exec "$@"',
      o.hideDir,
      ...cmd,
    ],
    { env },
  );
}

/** A quantizer worker (`--host-id <host>`) on a worker host. */
export const startRemoteQuantizer = (net: TestNet, host: string, o: WorkerHostOptions): Proc =>
  track(onWorkerHost(net, host, [process.execPath, quantizerMain, "--host-id", host], o));

/** An evaluator worker (`--host-id <host>`) on a worker host: scores batches of windows of a distributed evaluation. */
export const startRemoteEvaluator = (net: TestNet, host: string, o: WorkerHostOptions): Proc =>
  track(onWorkerHost(net, host, [process.execPath, evaluatorMain, "--host-id", host], { ...o, stage: "evaluator" }));

/** Items a worker logged as quantized. */
export const quantizedCount = (p: Proc) => (p.out.match(/ quantized \d+\/\d+\//g) ?? []).length;

export interface RunDump {
  events: {
    seq: number;
    type: string;
    time: string;
    key?: string;
    host?: string;
    stage: string;
    files?: string[];
    /** EvaluationCompleted: batches merged per host that scored them */
    scoredBy?: Record<string, number>;
  }[];
  deadLetters: number;
  replicas: Record<string, number>;
}

/** The run's events and dead letters, read from the cluster on `host`. */
export async function dumpRunOn(net: TestNet, host: string, runId: string, env: NodeJS.ProcessEnv): Promise<RunDump> {
  const p = track(net.spawn(host, process.execPath, [dumpRun, runId], { env }));
  const code = await p.exit;
  if (code !== 0) throw new Error(`dump-run failed (${code}): ${p.out}`);
  return JSON.parse(p.stdout) as RunDump;
}

/** Waits until the cluster's JetStream answers API calls, probing from `host`. */
export async function waitForJetStream(net: TestNet, host: string, env: NodeJS.ProcessEnv): Promise<void> {
  const p = track(net.spawn(host, process.execPath, [dumpRun, "--ready"], { env }));
  const code = await p.exit;
  if (code !== 0) throw new Error(`JetStream of the cluster never answered: ${p.out}`);
}
