// The llama.cpp-style text block for KldStats, so numbers can be compared side by side with
// `llama-perplexity --kl-divergence` output.
import type { KldStats } from "./kld.ts";

function f(x: number, width: number, decimals: number): string {
  return (Number.isFinite(x) ? x.toFixed(decimals) : String(x)).padStart(width);
}

/** Text block in llama-perplexity's layout (PPL, KL divergence, token probability sections). */
export function formatKldTable(stats: KldStats): string {
  const out: string[] = [];
  const ppl = stats.perplexity;
  if (ppl) {
    out.push("====== Perplexity statistics ======");
    out.push(`Mean PPL(Q)                   : ${f(ppl.ppl.value, 10, 6)} ± ${f(ppl.ppl.uncertainty, 10, 6)}`);
    out.push(`Mean PPL(base)                : ${f(ppl.pplBase.value, 10, 6)} ± ${f(ppl.pplBase.uncertainty, 10, 6)}`);
    out.push(`Cor(ln(PPL(Q)), ln(PPL(base))): ${f(100 * ppl.lnPplCorrelation, 6, 2)}%`);
    out.push(
      `Mean ln(PPL(Q)/PPL(base))     : ${f(ppl.lnPplRatio.value, 10, 6)} ± ${f(ppl.lnPplRatio.uncertainty, 10, 6)}`,
    );
    out.push(`Mean PPL(Q)/PPL(base)         : ${f(ppl.pplRatio.value, 10, 6)} ± ${f(ppl.pplRatio.uncertainty, 10, 6)}`);
    out.push(`Mean PPL(Q)-PPL(base)         : ${f(ppl.pplDiff.value, 10, 6)} ± ${f(ppl.pplDiff.uncertainty, 10, 6)}`);
    out.push("");
  }
  const k = stats.kld;
  out.push("====== KL divergence statistics ======");
  out.push(`Mean    KLD: ${f(k.mean, 10, 6)} ± ${f(k.uncertainty, 10, 6)}`);
  const kRows: [string, number][] = [
    ["Maximum", k.max],
    ["99.9%  ", k.p99_9],
    ["99.0%  ", k.p99],
    ["95.0%  ", k.p95],
    ["90.0%  ", k.p90],
    ["Median ", k.median],
    ["10.0%  ", k.p10],
    [" 5.0%  ", k.p5],
    [" 1.0%  ", k.p1],
    [" 0.1%  ", k.p0_1],
    ["Minimum", k.min],
  ];
  for (const [label, v] of kRows) out.push(`${label} KLD: ${f(v, 10, 6)}`);
  out.push("");
  out.push("====== Token probability statistics ======");
  const d = stats.deltaP;
  if (d) {
    out.push(`Mean    Δp: ${f(100 * d.mean, 6, 3)} ± ${f(100 * d.uncertainty, 5, 3)} %`);
    const dRows: [string, number][] = [
      ["Maximum", d.max],
      ["99.9%  ", d.p99_9],
      ["99.0%  ", d.p99],
      ["95.0%  ", d.p95],
      ["90.0%  ", d.p90],
      ["75.0%  ", d.p75],
      ["Median ", d.median],
      ["25.0%  ", d.p25],
      ["10.0%  ", d.p10],
      [" 5.0%  ", d.p5],
      [" 1.0%  ", d.p1],
      [" 0.1%  ", d.p0_1],
      ["Minimum", d.min],
    ];
    for (const [label, v] of dRows) out.push(`${label} Δp: ${f(100 * v, 6, 3)}%`);
    out.push(`RMS Δp    : ${f(100 * d.rms, 6, 3)} ± ${f(100 * d.rmsUncertainty, 5, 3)} %`);
  }
  out.push(`Same top p: ${f(100 * stats.sameTop.value, 6, 3)} ± ${f(100 * stats.sameTop.uncertainty, 5, 3)} %`);
  return `${out.join("\n")}\n`;
}
