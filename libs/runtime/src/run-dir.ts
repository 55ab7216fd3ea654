// A run's work dir: run.json (id, options, graph, bus), the embedded server's JetStream store,
// durable tensors (every descriptor a stage publishes points here, so a restarted stage or a
// resumed run finds them), activations at layer boundaries, and one log per stage process.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Graph } from "@moeq/contracts";
import { RunDirError } from "./errors.ts";
import type { RunOptions } from "./options.ts";

export interface RunInfo {
  readonly runId: string;
  readonly modelDir: string;
  readonly outDir: string;
  readonly options: RunOptions;
  readonly graph: Graph;
  /** absolute paths of the graph's stage commands, resolved when the run was created */
  readonly commands: Readonly<Record<string, readonly string[]>>;
  readonly stageOptions: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  readonly replicas: Readonly<Record<string, number>>;
  /** set when the run uses an external server (--nats); embedded runs start one on natsStore */
  readonly natsUrl?: string;
  /** BLAS threads of every stage process (fixed so a restarted stage accumulates in the same order) */
  readonly threads?: number;
  readonly createdAt: string;
  /** the command line that created the run (after `moeq`), for the model card */
  readonly command?: readonly string[];
}

export const runPaths = (workDir: string) => ({
  runJson: join(workDir, "run.json"),
  natsStore: join(workDir, "nats"),
  natsBase: workDir,
  tensors: join(workDir, "tensors"),
  acts: join(workDir, "acts"),
  logs: join(workDir, "logs"),
  report: join(workDir, "report"),
  stats: join(workDir, "stats"),
  /** token streams are cached across runs (tokenizing the Brown calib split takes ~15 s) */
  cache: process.env.MOEQ_CACHE_DIR ?? join(homedir(), ".cache", "moeq", "tokens"),
});

/** tensors/ subdirectories whose files are per layer, named `L<layer>.…` (see removeLayerArtifacts). */
export const LAYER_ARTIFACT_DIRS = ["calib", "route", "quant", "weights"] as const;

/** The layer's input activations (f32 [windows·T, hidden]) that the calibrator persists between layers. */
export const layerInputFile = (actsDir: string, layer: number) => join(actsDir, `layer-${layer}.input.f32`);

/**
 * Deletes what the pipeline wrote for `layer` and no longer needs once the packer has written
 * the layer (LayerPacked): its routing input, Hessians, routing plan, cut-out weights, quantizer
 * outputs and its input activations. Idempotent (a resumed packer repeats it). Returns bytes freed.
 */
export function removeLayerArtifacts(workDir: string, layer: number): number {
  const prefix = `L${layer}.`;
  let freed = 0;
  const drop = (path: string) => {
    try {
      freed += statSync(path).size;
      rmSync(path, { force: true });
    } catch {
      // already gone
    }
  };
  for (const sub of LAYER_ARTIFACT_DIRS) {
    const dir = join(runPaths(workDir).tensors, sub);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) if (n.startsWith(prefix)) drop(join(dir, n));
  }
  drop(layerInputFile(runPaths(workDir).acts, layer));
  return freed;
}

/** Writes a file through a temp file + fsync + rename, so readers see all of it or none. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const fd = openSync(tmp, "w");
  try {
    for (let off = 0; off < bytes.byteLength; )
      off += writeSync(fd, bytes, off, Math.min(1 << 30, bytes.byteLength - off));
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    // writeSync's own message ("ENOSPC: no space left on device, write") names no file
    throw new Error(`writing ${path}: ${(e as Error).message}`, { cause: e });
  }
  closeSync(fd);
  renameSync(tmp, path);
}

export function writeRunInfo(workDir: string, info: RunInfo): void {
  writeFileAtomic(runPaths(workDir).runJson, `${JSON.stringify(info, null, 2)}\n`);
}

export function readRunInfo(workDir: string): RunInfo {
  const file = runPaths(workDir).runJson;
  if (!existsSync(file))
    throw new RunDirError({ path: file, message: `${workDir} is not a moeq work dir: ${file} does not exist` });
  try {
    const v = JSON.parse(readFileSync(file, "utf8")) as RunInfo;
    if (typeof v.runId !== "string" || typeof v.modelDir !== "string" || typeof v.outDir !== "string" || !v.graph)
      throw new Error("missing runId, modelDir, outDir or graph");
    return v;
  } catch (e) {
    throw new RunDirError({ path: file, message: `${file}: not a valid run.json: ${(e as Error).message}` });
  }
}

/**
 * Where a run may read model files: the model dir, and the targets of the symlinks in it — a Hugging
 * Face cache snapshot (`models--org--name/snapshots/<rev>/`) links each file to `../../blobs/<sha>`,
 * and exactly those blob files (not the whole cache) become readable.
 */
export function modelRoots(modelDir: string): string[] {
  const roots = [modelDir];
  for (const e of readdirSync(modelDir, { withFileTypes: true }))
    if (e.isSymbolicLink()) roots.push(join(modelDir, e.name));
  return roots;
}
