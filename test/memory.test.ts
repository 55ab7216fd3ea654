// A work dir that cleans up after itself and runs that stop cleanly when the disk is full, on a
// synthesized 3-layer model (a few seconds of compute per run):
//   - each layer's artifacts (routing input and plan, Hessians, quantizer outputs) are gone once
//     the packer has packed it (LayerPacked), and so are the part files once the output exists;
//   - a supervisor killed after layer 0 was packed (its artifacts deleted) resumes to the same bytes;
//   - `moeq quantize` refuses a run whose work dir cannot fit, with the numbers, writing nothing;
//   - the output filesystem (a tmpfs in a private mount namespace) filling up mid-run stops the
//     run with ENOSPC naming the path and nothing published; `moeq resume` after freeing space
//     gives the undisturbed run's bytes (that run keeps its artifacts: --keep-artifacts).
// Needs root for `unshare -m` and mount (the CI and dev machines run as root).
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { cli, logOf, moeq, moeqSpawn, root, shardHashes, tempDir, waitForLog } from "./helpers.ts";

const dir = tempDir("memory");
const model = join(dir, "model");
const windows = ["--calib", "random:16x64", "--eval", "random:4x64", "--quantizers", "2"];
const ARTIFACT_DIRS = ["calib", "route", "quant", "weights"];
let baseline: Record<string, string> = {};

/** Files the pipeline wrote for `layer` under the work dir's tensors/ (named L<layer>.…). */
const layerFiles = (work: string, layer: number) =>
  ARTIFACT_DIRS.flatMap((d) => {
    const p = join(work, "tensors", d);
    return existsSync(p) ? readdirSync(p).filter((f) => f.startsWith(`L${layer}.`)) : [];
  });

const sh = (script: string, timeoutMs = 600_000): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) =>
    execFile(
      "unshare",
      ["-m", "--propagation", "private", "bash", "-c", script],
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );

beforeAll(async () => {
  const s = await moeq([
    "synth",
    "--arch",
    "qwen3_moe",
    "--preset",
    "tiny",
    "--layers",
    "3",
    "--seed",
    "11",
    "--out",
    model,
  ]);
  expect(s.code, s.stderr).toBe(0);
  const out = join(dir, "baseline");
  const r = await moeq(["quantize", model, "--out", out, ...windows, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  baseline = shardHashes(out);
}, 600_000);

describe("work dir and disk", () => {
  it("every layer's artifacts are deleted once it is packed, the parts once the output is published", () => {
    const work = join(dir, "baseline.moeq-work");
    for (const L of [0, 1, 2]) expect(layerFiles(work, L), `layer ${L}`).toEqual([]);
    expect(existsSync(join(work, "tensors", "packed"))).toBe(false);
    expect(readdirSync(join(work, "acts"))).toEqual([]);
    const log = logOf(work, "packer");
    for (const L of [0, 1, 2])
      expect(log).toMatch(new RegExp(`layer ${L} packed \\([\\d.]+ MiB\\), [\\d.]+ MiB of artifacts deleted`));
    // the loader waited for the packer before publishing layer 2 (backpressure)
    expect(logOf(work, "loader")).toContain("layer 2 waits until layer 0 is packed");
  });

  it("a supervisor killed after layer 0 was packed (its artifacts gone) resumes to the same bytes", async () => {
    const out = join(dir, "resumed");
    const work = `${out}.moeq-work`;
    // ackWaitMs: an item held by a quantizer killed with the supervisor comes back after 20 s, not 120 s
    const graph = join(dir, "graph.json");
    const stages = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"].map((name) => ({
      name,
      manifest: join(root, "stages", name, "manifest.json"),
      replicas: name === "quantizer" ? 2 : 1,
      options: name === "quantizer" ? { ackWaitMs: 20_000 } : {},
    }));
    writeFileSync(graph, JSON.stringify({ version: 1, stages }, null, 2));
    const run = moeqSpawn(["quantize", model, "--out", out, ...windows, "--graph", graph, "--json"]);
    await waitForLog(work, "packer", /layer 0 packed/);
    run.child.kill("SIGKILL");
    await run.done;
    expect(layerFiles(work, 0)).toEqual([]);
    const r = await moeq(["resume", work, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { status: string }).status).toBe("completed");
    expect(shardHashes(out)).toEqual(baseline);
  }, 600_000);

  it("moeq quantize refuses a run that cannot fit the free disk, with the numbers, writing nothing", async () => {
    const mnt = join(dir, "tiny-fs");
    const r = await sh(
      `mkdir -p ${mnt} && mount -t tmpfs -o size=1M tmpfs ${mnt} && ${process.execPath} ${cli} quantize ${model} --out ${mnt}/out ${windows.join(" ")}; echo "rc=$?"; ls -A ${mnt}`,
    );
    expect(r.stdout).toMatch(/rc=1\n$/);
    expect(r.stderr).toMatch(
      new RegExp(
        `not enough disk space for this run: ${mnt}/out\\.moeq-work needs about [\\d.]+ MiB \\(work dir peak [\\d.]+ MiB: ~3 layers of artifacts at up to [\\d.]+ MiB each \\+ the packed output [\\d.]+ MiB, plus the output dir [\\d.]+ MiB on the same filesystem\\), ${mnt} has [\\d.]+ MiB free`,
      ),
    );
  }, 120_000);

  it("ENOSPC on the output's filesystem stops the run naming the path; resume after freeing space gives the same bytes", async () => {
    const mnt = join(dir, "small-fs");
    const work = join(dir, "enospc.moeq-work");
    const out = `${mnt}/out`;
    const hashes = join(dir, "enospc.sha256");
    const first = join(dir, "enospc-1.json");
    const second = join(dir, "enospc-2.json");
    // The output dir is on a 32 MiB tmpfs (pre-flight passes); once the packer runs, a filler
    // takes all of it, so publishing the checkpoint fails. The tmpfs lives only in this
    // namespace, so the hashes are taken inside it.
    const r = await sh(`set -u
mkdir -p ${mnt} && mount -t tmpfs -o size=32M tmpfs ${mnt} || exit 90
${process.execPath} ${cli} quantize ${model} --out ${out} --work-dir ${work} ${windows.join(" ")} --keep-artifacts --json > ${first} &
run=$!
until grep -q "packing" ${work}/logs/packer.0.log 2>/dev/null; do sleep 0.2; done
dd if=/dev/zero of=${mnt}/filler bs=1M 2>/dev/null
wait $run; echo "first=$?"
ls -A ${mnt} | tr '\\n' ' '; echo
rm ${mnt}/filler
${process.execPath} ${cli} resume ${work} --json > ${second}; echo "second=$?"
(cd ${out} && sha256sum *.safetensors) > ${hashes}
`);
    expect(r.stdout, r.stderr).toMatch(/first=1\n/);
    // nothing half-written was published: only the filler (no output dir, no temp dir left)
    expect(r.stdout).toMatch(/first=1\nfiller \n/);
    const s1 = JSON.parse(readFileSync(first, "utf8")) as { status: string; error: string };
    expect(s1.status).toBe("stopped");
    expect(s1.error).toMatch(
      new RegExp(`packer ran out of disk space: .*${mnt}/.*(ENOSPC|no space left on device).*moeq resume ${work}`),
    );
    expect(r.stdout).toMatch(/second=0\n/);
    expect((JSON.parse(readFileSync(second, "utf8")) as { status: string }).status).toBe("completed");
    const got = Object.fromEntries(
      readFileSync(hashes, "utf8")
        .trim()
        .split("\n")
        .map((l) => l.split(/\s+/).reverse()),
    );
    expect(got).toEqual(baseline);
    // --keep-artifacts: every layer's artifacts are still there, and the output is the same bytes
    for (const L of [0, 1, 2]) expect(layerFiles(work, L).length, `layer ${L}`).toBeGreaterThan(0);
  }, 600_000);
});
