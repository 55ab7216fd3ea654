// Per-layer table of one `moeq quantize --device cuda` run (run.sh pipeline): from the summary
// JSON (layer times, each process's peak RSS) and the stage logs (the calibrator's split of a
// layer into the CPU forward, the device statistics and the hand-off; the quantizers' batched
// GPTQ), plus peak GPU memory from the nvidia-smi samples.
//   node native/bench/gpu/pipeline-report.mjs <summary.json> <work-dir> <gpu-mem.csv> [out.json]
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [summaryPath, workDir, memCsv, outPath] = process.argv.slice(2);
const summary = JSON.parse(readFileSync(summaryPath, "utf8"));
const logs = join(workDir, "logs");
const read = (f) => readFileSync(join(logs, f), "utf8");
const layers = new Map();
const L = (n) => {
  if (!layers.has(n)) layers.set(n, { layer: n });
  return layers.get(n);
};
const num = (s) => Number.parseFloat(s);
for (const f of readdirSync(logs).filter((f) => f.startsWith("calibrator."))) {
  for (const line of read(f).split("\n")) {
    let m = /layer (\d+) done in ([\d.]+) s \(attention ([\d.]+) s, MLP\/MoE \+ calibration ([\d.]+) s\)/.exec(line);
    if (m) Object.assign(L(+m[1]), { calibrator: num(m[2]), attention: num(m[3]), moeBlock: num(m[4]) });
    m = /layer (\d+): plan ([\d.]+) s, statistics \+ work items ([\d.]+) s/.exec(line);
    if (m) Object.assign(L(+m[1]), { plan: num(m[2]), statsAndItems: num(m[3]) });
    m =
      /layer (\d+): \d+ experts on cuda\S*: x upload ([\d.]+) s, weights ([\d.]+) s, statistics ([\d.]+) s, hand-off ([\d.]+) s/.exec(
        line,
      );
    if (m)
      Object.assign(L(+m[1]), {
        xUpload: num(m[2]),
        weightsUpload: num(m[3]),
        statistics: num(m[4]),
        handOff: num(m[5]),
      });
    m = /layer (\d+): MoE output \(CPU engine\) ([\d.]+) s, then waited ([\d.]+) s/.exec(line);
    if (m) Object.assign(L(+m[1]), { moeForward: num(m[2]), waitGptq: num(m[3]) });
  }
}
for (const f of readdirSync(logs).filter((f) => f.startsWith("quantizer."))) {
  for (const line of read(f).split("\n")) {
    const m =
      /layer (\d+) experts\.(gate_up|down): (\d+) experts × \[\d+, \d+\] GPTQ ([\d.]+) s .*loss \+ download ([\d.]+) s, outputs \+ events ([\d.]+) s/.exec(
        line,
      );
    if (m)
      Object.assign(L(+m[1]), {
        [`gptq_${m[2]}`]: num(m[4]),
        [`download_${m[2]}`]: num(m[5]),
        [`outputs_${m[2]}`]: num(m[6]),
      });
  }
}
const mem = readFileSync(memCsv, "utf8").split("\n").map(Number).filter(Number.isFinite);
const peakGpuMiB = Math.max(0, ...mem);
const rows = [...layers.values()].sort((a, b) => a.layer - b.layer);
const f = (v) => (v === undefined ? "  -  " : v.toFixed(2).padStart(6));
console.log(
  "layer  calib  attn(CPU) plan  weights↑ stats(GPU) hand-off MoE-out(CPU) wait  | GPTQ gate_up  down  outputs+events",
);
for (const r of rows)
  console.log(
    `${String(r.layer).padStart(5)} ${f(r.calibrator)} ${f(r.attention)} ${f(r.plan)} ${f(r.weightsUpload)} ${f(r.statistics)} ${f(r.handOff)} ${f(r.moeForward)} ${f(r.waitGptq)} | ${f(r.gptq_gate_up)} ${f(r.gptq_down)} ${f((r.outputs_gate_up ?? 0) + (r.outputs_down ?? 0))}`,
  );
const rss = summary.stages.map((s) => ({
  stage: s.stage,
  seconds: s.seconds,
  peakRssMiB: s.instances.map((i) => Math.round(i.peakRssMiB)),
}));
for (const s of rss)
  console.log(
    `${s.stage.padEnd(16)} wall ${s.seconds.toFixed(1).padStart(7)} s  peak RSS ${s.peakRssMiB.join(", ")} MiB`,
  );
console.log(
  `run ${summary.status} in ${summary.seconds.toFixed(1)} s; peak GPU memory ${peakGpuMiB} MiB (nvidia-smi, whole card); mean KLD ${summary.kld?.kld?.mean}`,
);
if (outPath)
  writeFileSync(
    outPath,
    JSON.stringify(
      {
        layers: rows,
        stages: rss,
        peakGpuMiB,
        seconds: summary.seconds,
        status: summary.status,
        kld: summary.kld?.kld?.mean,
      },
      null,
      1,
    ),
  );
