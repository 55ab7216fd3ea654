// The run's summary, derived from its events (so `moeq resume` of a finished run prints the same
// thing) plus what the supervisor measured of its processes: time per stage and per layer,
// peak RSS per process, sizes, RTN fallbacks, the KLD table and where the report is.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Event, EventOf, RunState } from "@moeq/contracts";
import { formatKldTable, type KldStats } from "@moeq/eval";
import { type RunInfo, runPaths, stageSpans, writeFileAtomic } from "@moeq/runtime";
import { type CoverageDigest, coverageWarnings, digestCoverage } from "@moeq/stage-router-override";
import type { StageProcessStats } from "./processes.ts";

export interface RunSummary {
  /** "stopped": a stage ran out of disk space; the run is resumable (`moeq resume`) */
  readonly status: RunState["status"] | "stopped";
  readonly runId: string;
  readonly workDir: string;
  readonly seconds: number;
  readonly error?: string;
  readonly model: { readonly dir: string; readonly arch?: string; readonly layers: number; readonly bytes: number };
  readonly output: { readonly dir: string; readonly shards: number; readonly bytes: number; readonly format?: string };
  readonly stages: {
    stage: string;
    seconds: number;
    instances: { instance: number; pids: number[]; restarts: number; peakRssMiB: number }[];
  }[];
  readonly layers: { layer: number; calibSeconds: number; quantSeconds: number; projections: number }[];
  readonly fallbacks: { layer: number; expert: number }[];
  /** the packer's notes (pack.json): input-scale fallbacks of experts without calibration tokens, scale dtypes */
  readonly packNotes?: string[];
  /** per MoE layer, what the calibration policy fed each expert (from RoutingPlanned) */
  readonly coverage: {
    readonly policy: string;
    readonly zeroTokenFallback: string;
    readonly minTokens: number;
    readonly layers: (CoverageDigest & { readonly layer: number })[];
    readonly warnings: string[];
  } | null;
  readonly kld: KldStats | null;
  readonly reportDir?: string;
}

const dirBytes = (d: string) =>
  existsSync(d)
    ? readdirSync(d).reduce((s, f) => s + (statSync(join(d, f)).isFile() ? statSync(join(d, f)).size : 0), 0)
    : 0;

export function buildSummary(a: {
  info: RunInfo;
  workDir: string;
  events: readonly Event[];
  state: RunState;
  processes: StageProcessStats[];
  wallSeconds: number;
  stopped?: string;
}): RunSummary {
  const { info, events } = a;
  const span = stageSpans(events);
  // Peak RSS: the supervisor's /proc samples, and what each process reported at exit.
  const reported = new Map<number, number>();
  const statsDir = runPaths(a.workDir).stats;
  if (existsSync(statsDir))
    for (const f of readdirSync(statsDir)) {
      try {
        const s = JSON.parse(readFileSync(join(statsDir, f), "utf8")) as { pid: number; maxRssKiB: number };
        reported.set(s.pid, s.maxRssKiB);
      } catch {}
    }
  const stageNames = [...new Set([...info.graph.stages.map((s) => s.name)])];
  const stages = stageNames.map((stage) => ({
    stage,
    seconds: span.has(stage) ? (span.get(stage)!.to - span.get(stage)!.from) / 1000 : 0,
    instances: a.processes
      .filter((p) => p.stage === stage)
      .map((p) => ({
        instance: p.instance,
        pids: p.pids,
        restarts: p.restarts,
        peakRssMiB: Math.max(p.peakRssKiB, ...p.pids.map((pid) => reported.get(pid) ?? 0)) / 1024,
      })),
  }));
  const layers = new Map<number, { layer: number; calibSeconds: number; quantSeconds: number; projections: number }>();
  const L = (n: number) => {
    if (!layers.has(n)) layers.set(n, { layer: n, calibSeconds: 0, quantSeconds: 0, projections: 0 });
    return layers.get(n)!;
  };
  const seenQ = new Set<string>();
  const fallbacks: { layer: number; expert: number }[] = [];
  let kld: KldStats | null = null;
  let reportDir: string | undefined;
  let format: string | undefined;
  const planned = new Map<number, EventOf<"RoutingPlanned">>();
  let hidden = 0;
  for (const e of events) {
    if (e.type === "RoutingPlanned") planned.set(e.payload.layer, e as EventOf<"RoutingPlanned">);
    if (e.type === "ModelOpened") hidden = e.payload.hiddenSize;
    if (e.type === "LayerCompleted") L(e.payload.layer).calibSeconds = e.payload.seconds;
    if (e.type === "ExpertQuantized") {
      const k = `${e.payload.layer}/${e.payload.expert}/${e.payload.proj}`;
      if (seenQ.has(k)) continue;
      seenQ.add(k);
      const row = L(e.payload.layer);
      row.quantSeconds += e.payload.seconds;
      row.projections++;
    }
    if (e.type === "RoutingPlanned" && info.options.algorithm === "gptq")
      for (const c of e.payload.coverage)
        if (c.tokensUsed === 0) fallbacks.push({ layer: e.payload.layer, expert: c.expert });
    if (e.type === "EvaluationCompleted") {
      kld = (e.payload.stats as { kld: KldStats }).kld;
      reportDir = (e.payload.stats as { reportDir?: string }).reportDir;
    }
    if (e.type === "CheckpointPacked") format = e.payload.format;
  }
  const minTokens = info.options.minExpertTokens || hidden;
  const fallbackName = info.options.zeroTokenFallback ?? "rtn";
  const plans = [...planned.values()].sort((x, y) => x.payload.layer - y.payload.layer);
  const coverage: RunSummary["coverage"] = plans.length
    ? {
        policy: plans[0].payload.policy,
        zeroTokenFallback: fallbackName,
        minTokens,
        layers: plans.map((p) => ({ layer: p.payload.layer, ...digestCoverage(p.payload.coverage, minTokens) })),
        warnings: plans.flatMap((p) =>
          coverageWarnings(p.payload.layer, p.payload.coverage, {
            policy: p.payload.policy,
            minTokens,
            fallback: fallbackName,
          }),
        ),
      }
    : null;
  const summary: RunSummary = {
    status: a.stopped ? "stopped" : a.state.status,
    runId: info.runId,
    workDir: a.workDir,
    seconds: a.wallSeconds,
    ...(a.stopped ? { error: a.stopped } : a.state.error ? { error: a.state.error } : {}),
    model: { dir: info.modelDir, arch: a.state.arch, layers: a.state.layers, bytes: dirBytes(info.modelDir) },
    output: {
      dir: info.outDir,
      shards: Object.keys(a.state.shards).length,
      bytes: dirBytes(info.outDir),
      ...(format ? { format } : {}),
    },
    stages,
    layers: [...layers.values()].sort((x, y) => x.layer - y.layer),
    fallbacks,
    ...packNotesOf(a.workDir),
    coverage,
    kld,
    ...(reportDir ? { reportDir } : {}),
  };
  try {
    writeFileAtomic(join(runPaths(a.workDir).report, "run-stats.json"), `${JSON.stringify(summary, null, 2)}\n`);
  } catch {}
  return summary;
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

export function formatSummary(s: RunSummary): string {
  const out: string[] = [];
  out.push(`run ${s.runId}: ${s.status} in ${s.seconds.toFixed(1)} s${s.error ? ` — ${s.error}` : ""}`);
  out.push(`  model   ${s.model.dir} (${s.model.arch ?? "?"}, ${s.model.layers} layers, ${mb(s.model.bytes)})`);
  if (s.output.shards > 0)
    out.push(
      `  output  ${s.output.dir} (${s.output.format ?? "?"}, ${s.output.shards} shard(s), ${mb(s.output.bytes)})`,
    );
  out.push("  stages  wall s   peak RSS per process");
  for (const st of s.stages)
    out.push(
      `    ${st.stage.padEnd(16)} ${st.seconds.toFixed(1).padStart(7)}   ${st.instances.map((i) => `#${i.instance} ${i.peakRssMiB.toFixed(0)} MiB${i.restarts ? ` (${i.restarts} restart${i.restarts > 1 ? "s" : ""})` : ""}`).join(", ")}`,
    );
  if (s.layers.length) {
    out.push("  layers  calib s  quantize s (sum over projections)");
    for (const l of s.layers)
      out.push(
        `    ${String(l.layer).padStart(4)}  ${l.calibSeconds.toFixed(2).padStart(7)}  ${l.quantSeconds.toFixed(2).padStart(9)}  (${l.projections} projections)`,
      );
  }
  if (s.coverage) {
    const c = s.coverage;
    out.push(
      `  coverage  policy ${c.policy}, zero-token fallback ${c.zeroTokenFallback}, threshold ${c.minTokens} routed tokens`,
    );
    for (const l of c.layers)
      out.push(
        `    ${String(l.layer).padStart(4)}  ${l.experts} experts: ${l.unrouted} unrouted, ${l.belowMin} below threshold, ${l.uncalibrated} without calibration tokens; calibrated routed ${l.routedOnly} / blended ${l.blended} / fallback ${l.uncalibrated}; min used ${l.minUsed}, ESS min ${l.minEss.toFixed(1)} median ${l.medianEss.toFixed(0)}`,
      );
    for (const w of c.warnings) out.push(`    warning: ${w}`);
  }
  for (const n of s.packNotes ?? []) out.push(`  pack note: ${n}`);
  if (s.fallbacks.length)
    out.push(
      `  RTN fallback (no calibration tokens): ${s.fallbacks.length} experts: ${s.fallbacks.map((f) => `L${f.layer}/E${f.expert}`).join(" ")}`,
    );
  if (s.kld) out.push("", formatKldTable(s.kld));
  if (s.reportDir) out.push(`  report  ${join(s.reportDir, "report.html")}`);
  out.push(`  stats   ${join(runPaths(s.workDir).report, "run-stats.json")}`);
  return out.join("\n");
}

function packNotesOf(workDir: string): { packNotes?: string[] } {
  const f = join(runPaths(workDir).report, "pack.json");
  if (!existsSync(f)) return {};
  try {
    const notes = JSON.parse(readFileSync(f, "utf8")).notes;
    return Array.isArray(notes) && notes.length ? { packNotes: notes.map(String) } : {};
  } catch {
    return {};
  }
}
