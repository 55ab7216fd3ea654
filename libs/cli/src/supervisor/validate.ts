// Everything the supervisor checks before any work: model dir, config, architecture, weights,
// options, texts, graph, output and work dirs, and that the run fits the free disk and memory. Failures are typed errors naming the path,
// tensor or field; nothing has been written when one is thrown.
import { accessSync, constants, existsSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { architectureNote, loadModel, unusedTensors } from "@moeq/models";
import {
  floatSchemeCanPack,
  isFloatScheme,
  OptionsError,
  quantTargets,
  type RunOptions,
  SCHEME_INFO,
} from "@moeq/runtime";
import { checkResources, estimateResources, type ResourceEstimate } from "./resources.ts";

export interface Preflight {
  readonly modelDir: string;
  readonly outDir: string;
  readonly workDir: string;
  readonly arch: string;
  readonly layers: number;
  readonly experts: number;
  readonly targets: number;
  readonly modelBytes: number;
  readonly vocab: number;
  /** the registry chose the architecture by architectures[0] (said to the user, never silent) */
  readonly architectureNote: string | undefined;
  /** checkpoint tensors the forward pass never reads (listed to the user) */
  readonly unusedTensors: string[];
  /** disk and memory the run is expected to need (checked against what is free) */
  readonly estimate: ResourceEstimate;
}

const fail = (field: string, message: string): never => {
  throw new OptionsError({ field, message });
};

function checkWritableParent(path: string, field: string) {
  const parent = dirname(path);
  if (!existsSync(parent)) fail(field, `${parent} (parent of ${path}) does not exist`);
  try {
    accessSync(parent, constants.W_OK);
    const probe = join(parent, `.moeq-probe-${process.pid}`);
    writeFileSync(probe, "");
    rmSync(probe);
  } catch (e) {
    fail(field, `${parent} is not writable: ${(e as Error).message}`);
  }
}

/** The input-column multiple a scheme needs: integer groups, NVFP4's 16- and MXFP4's 32-element
 *  blocks (serving kernels require whole blocks). FP8 needs none: 128×128 blocks may be partial at
 *  the edges, exactly as DeepSeek-V3's own checkpoints store them. */
function columnBlocking(options: RunOptions): { size: number; field: string; what: string } | undefined {
  const family = SCHEME_INFO[options.scheme].family;
  if (family === "int")
    return options.groupSize === -1
      ? undefined
      : { size: options.groupSize, field: "group-size", what: `group size ${options.groupSize}` };
  if (family === "nvfp4") return { size: 16, field: "scheme", what: "16 (NVFP4 blocks)" };
  if (family === "mxfp4") return { size: 32, field: "scheme", what: "32 (MXFP4 blocks)" };
  return undefined;
}

const isEmptyDir = (p: string) => statSync(p).isDirectory() && readdirSync(p).length === 0;

/** `child` lies strictly below `parent` (both absolute, resolved). */
const within = (child: string, parent: string): boolean =>
  child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

export function preflight(
  modelDirArg: string,
  outArg: string,
  workArg: string | undefined,
  options: RunOptions,
): Preflight {
  const modelDir = resolve(modelDirArg);
  if (!existsSync(modelDir)) fail("model-dir", `${modelDir} does not exist`);
  if (!statSync(modelDir).isDirectory()) fail("model-dir", `${modelDir} is not a directory`);
  const model = loadModel(modelDir);
  let info: Omit<Preflight, "outDir" | "workDir" | "estimate">;
  let estimate: ResourceEstimate;
  try {
    const targets = quantTargets(model.arch, model.spec, options.targets);
    if (targets.length === 0) fail("targets", `${options.targets}: the model has nothing to quantize`);
    if (isFloatScheme(options.scheme))
      for (const t of targets)
        if (!floatSchemeCanPack(t))
          fail(
            "scheme",
            `${t.tensor}: scheme ${options.scheme} cannot quantize a row slice of the fused module ${t.packed.module}; use an int scheme or --targets experts`,
          );
    const blocking = columnBlocking(options);
    if (blocking)
      for (const t of targets)
        if (t.cols % blocking.size !== 0)
          fail(blocking.field, `${t.tensor} has ${t.cols} input columns, not a multiple of ${blocking.what}`);
    estimate = estimateResources(model, targets, options);
    const moe = model.spec.layers.find((l) => l.mlp.kind === "moe")?.mlp;
    info = {
      modelDir,
      arch: model.spec.modelType,
      layers: model.spec.layers.length,
      experts: moe && moe.kind === "moe" ? moe.experts.numExperts : 0,
      targets: targets.length,
      vocab: model.spec.vocabSize,
      architectureNote: architectureNote(model.config),
      unusedTensors: unusedTensors(model.spec, model.source),
      modelBytes: model.checkpoint.files.reduce(
        (s, f) => s + statSync(f.startsWith("/") ? f : join(modelDir, f)).size,
        0,
      ),
    };
  } finally {
    model.close();
  }
  const hasTokenizer = existsSync(join(modelDir, "tokenizer.json"));
  for (const [field, spec] of [
    ["calib", options.calib],
    ["eval", options.eval],
  ] as const) {
    if (spec.startsWith("brown") && !hasTokenizer)
      fail(field, `${spec} needs ${join(modelDir, "tokenizer.json")}; use random:NxT for a model without a tokenizer`);
    const file = /^(.*\.(?:txt|jsonl))(?::\d+x\d+)?$/i.exec(spec)?.[1];
    if (file && !existsSync(file)) fail(field, `${file} does not exist`);
  }
  const outDir = resolve(outArg);
  if (outDir === modelDir) fail("out", `${outDir} is the model directory`);
  if (within(outDir, modelDir)) fail("out", `${outDir} is inside the model directory ${modelDir}; write elsewhere`);
  if (existsSync(outDir) && !isEmptyDir(outDir))
    fail("out", `${outDir} already exists; choose a new output directory or remove it`);
  checkWritableParent(outDir, "out");
  const workDir = resolve(workArg ?? `${outDir}.moeq-work`);
  // the packer replaces the output dir and a finished run may remove artifacts from the work dir:
  // sharing or nesting them would destroy the run's events or its output
  if (workDir === outDir || within(workDir, outDir) || within(outDir, workDir))
    fail("work-dir", `${workDir} and --out ${outDir} must be separate directories (neither inside the other)`);
  if (within(workDir, modelDir) || workDir === modelDir)
    fail("work-dir", `${workDir} is inside the model directory ${modelDir}; choose another work dir`);
  if (existsSync(workDir) && !isEmptyDir(workDir))
    fail(
      "work-dir",
      `${workDir} already exists (an earlier run?): continue it with \`moeq resume ${workDir}\` or remove it`,
    );
  checkWritableParent(workDir, "work-dir");
  checkResources(estimate, workDir, outDir);
  return { ...info, outDir, workDir, estimate };
}
