// Locating the shared fixtures (beside the checkout) and comparing against goldens.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const shared = join(repoRoot, "..", "shared");
export const tinyRandom = join(shared, "fixtures", "tiny-random");
export const trainedModel = join(shared, "models", "tiny-qwen3moe-brown");

export interface FixtureDir {
  readonly dir: string;
  readonly name: string;
  readonly modelType: string;
}

/** Every fixture folder (a config.json and a golden.safetensors), found at run time. */
export function fixtureDirs(): FixtureDir[] {
  return readdirSync(tinyRandom, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(tinyRandom, d.name, "golden.safetensors")))
    .map((d) => {
      const dir = join(tinyRandom, d.name);
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { model_type: string };
      return { dir, name: d.name, modelType: cfg.model_type };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** max |got − want| / max |want| (absolute when want is all zeros). */
export function maxRelErr(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Number.POSITIVE_INFINITY;
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    const d = Math.abs(got[i] - want[i]);
    err = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(err, d);
  }
  return scale > 0 ? err / scale : err;
}

/** Rows whose argmax differs (ties broken to the lower index on both sides). */
export function argmaxMismatches(got: Float32Array, want: Float32Array, cols: number): number[] {
  const am = (x: Float32Array, r: number) => {
    let best = 0;
    for (let c = 1; c < cols; c++) if (x[r * cols + c] > x[r * cols + best]) best = c;
    return best;
  };
  const bad: number[] = [];
  for (let r = 0; r < want.length / cols; r++) if (am(got, r) !== am(want, r)) bad.push(r);
  return bad;
}

/** Runs the repository's `moeq` launcher (real stage processes, embedded nats-server). */
export function moeq(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(join(repoRoot, "moeq"), args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => {
      stdout += d;
    });
    p.stderr.on("data", (d) => {
      stderr += d;
    });
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
