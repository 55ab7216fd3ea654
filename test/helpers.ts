// Shared pieces of the end-to-end tests: run the real `moeq` CLI as a child process, find stage
// processes through their logs, hash output shards.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const shared = join(root, "..", "shared");
export const trainedModel = join(shared, "models", "tiny-qwen3moe-brown");
export const cli = join(root, "libs", "cli", "dist", "main.js");

export const tempDir = (name: string) => mkdtempSync(join(tmpdir(), `moeq-e2e-${name}-`));

export interface CliResult {
  readonly code: number | null;
  /** the signal that ended the process, where it did not exit by itself */
  readonly signal?: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function moeq(args: readonly string[], timeoutMs = 600_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

export function moeqSpawn(args: readonly string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b) => (stdout += b));
  child.stderr!.on("data", (b) => (stderr += b));
  const done = new Promise<CliResult>((r) => child.on("exit", (code, signal) => r({ code, signal, stdout, stderr })));
  return { child, done };
}

export const logOf = (workDir: string, stage: string, instance = 0) => {
  const f = join(workDir, "logs", `${stage}.${instance}.log`);
  return existsSync(f) ? readFileSync(f, "utf8") : "";
};

/** Waits until the stage's log matches `re` and returns the pid of its latest start. */
export async function waitForLog(workDir: string, stage: string, re: RegExp, timeoutMs = 180_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = logOf(workDir, stage);
    const starts = [...log.matchAll(/started \(pid (\d+)\)/g)];
    const last = starts.at(-1);
    if (last && re.test(log.slice(last.index))) return Number(last[1]);
    await sleep(50);
  }
  throw new Error(`${stage} never logged ${re} in ${timeoutMs} ms:\n${logOf(workDir, stage)}`);
}

/** sha256 of every file in a checkpoint dir (shards, index, config). */
export function dirHashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort())
    out[f] = createHash("sha256")
      .update(readFileSync(join(dir, f)))
      .digest("hex");
  return out;
}

export const shardHashes = (dir: string) =>
  Object.fromEntries(Object.entries(dirHashes(dir)).filter(([f]) => f.endsWith(".safetensors")));

export const meanKld = (summaryJson: string): number =>
  (JSON.parse(summaryJson) as { kld: { kld: { mean: number } } }).kld.kld.mean;

/** `moeq synth` of a tiny model (2 layers unless said) into `out`; fails the test when synth fails. */
export async function synthTiny(out: string, o: { arch?: string; layers?: number; seed?: number } = {}): Promise<void> {
  const r = await moeq([
    "synth",
    "--arch",
    o.arch ?? "qwen3_moe",
    "--preset",
    "tiny",
    "--layers",
    String(o.layers ?? 2),
    "--seed",
    String(o.seed ?? 0),
    "--out",
    out,
  ]);
  if (r.code !== 0) throw new Error(`moeq synth failed: ${r.stderr}`);
}
