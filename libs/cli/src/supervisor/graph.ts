// Graph files: which implementation (a manifest with command + args) runs each stage, with how
// many replicas and which options. JSON or YAML; the default graph is built in and points at
// the stage packages of this checkout.
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Graph, StageManifest, validate } from "@moeq/contracts";
import { OptionsError } from "@moeq/runtime";
import { Result } from "effect";
import { parse as parseYaml } from "yaml";

export const REQUIRED_STAGES = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"] as const;

/** The checkout's root (libs/cli/dist/supervisor → ../../../..). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

export const defaultManifestPath = (stage: string) => join(repoRoot, "stages", stage, "manifest.json");

export function defaultGraph(quantizers: number): Graph {
  return {
    version: 1,
    stages: REQUIRED_STAGES.map((name) => ({
      name,
      manifest: defaultManifestPath(name),
      replicas: name === "quantizer" ? quantizers : 1,
    })),
  };
}

export interface ResolvedStage {
  readonly name: string;
  readonly replicas: number;
  /** argv with absolute paths */
  readonly command: readonly string[];
  readonly options: Readonly<Record<string, unknown>>;
  readonly manifest: StageManifest;
}

const bad = (field: string, message: string) => new OptionsError({ field, message });

export function readGraphFile(file: string): Graph {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw bad("graph", `${file}: cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw bad("graph", `${file}: not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
  const g = validate(Graph, raw, file);
  if (Result.isFailure(g)) throw bad("graph", g.failure.message);
  // Manifest paths in a graph file are relative to the file.
  return {
    ...g.success,
    stages: g.success.stages.map((s) => ({
      ...s,
      ...(s.manifest ? { manifest: isAbsolute(s.manifest) ? s.manifest : resolve(dirname(file), s.manifest) } : {}),
    })),
  };
}

/** Checks a graph and resolves each stage's manifest and command; throws OptionsError naming the stage/field. */
export function resolveGraph(graph: Graph): ResolvedStage[] {
  const names = graph.stages.map((s) => s.name);
  for (const n of names)
    if (names.indexOf(n) !== names.lastIndexOf(n)) throw bad(`graph.stages.${n}`, `stage ${n} appears twice`);
  for (const r of REQUIRED_STAGES)
    if (!names.includes(r))
      throw bad("graph.stages", `the graph has no ${r} stage (needs ${REQUIRED_STAGES.join(", ")})`);
  return graph.stages.map((s) => {
    const path = s.manifest ?? defaultManifestPath(s.name);
    if (!existsSync(path)) throw bad(`graph.stages.${s.name}.manifest`, `${path} does not exist`);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw bad(`graph.stages.${s.name}.manifest`, `${path}: not valid JSON: ${(e as Error).message}`);
    }
    const m = validate(StageManifest, raw, path);
    if (Result.isFailure(m)) throw bad(`graph.stages.${s.name}.manifest`, m.failure.message);
    const manifest = m.success;
    if (manifest.command.length === 0) throw bad(`graph.stages.${s.name}.manifest`, `${path}: empty command`);
    // Relative script paths in a manifest are relative to the checkout root (default stages) or the manifest.
    const command = manifest.command.map((a, i) => {
      if (i === 0 || isAbsolute(a) || a.startsWith("-")) return a;
      for (const base of [repoRoot, dirname(path)]) if (existsSync(join(base, a))) return join(base, a);
      return a;
    });
    for (const a of command.slice(1))
      if (/\.(m?js|cjs)$/.test(a) && !existsSync(a))
        throw bad(`graph.stages.${s.name}.manifest`, `${path}: ${a} does not exist (not built?)`);
    const replicas = s.replicas ?? 1;
    // 0: every worker of this queue runs elsewhere (other hosts join the run's bus on their own).
    if (replicas < 0 || (replicas === 0 && !manifest.queues.pulls.length))
      throw bad(
        `graph.stages.${s.name}.replicas`,
        `must be ≥ 1 (0 only for a queue consumer whose workers run on other hosts), got ${replicas}`,
      );
    if (replicas > 1 && !manifest.queues.pulls.length)
      throw bad(`graph.stages.${s.name}.replicas`, `${s.name} pulls no work queue; it runs as a single instance`);
    return { name: s.name, replicas, command, options: s.options ?? {}, manifest };
  });
}
