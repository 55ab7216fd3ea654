// The study's one table: a row per policy, per calibration size mean KLD ± its uncertainty,
// p99 KLD and the same-top rate, then the coverage under each policy (experts without any
// calibration token → RTN, experts below the routed-token threshold, the smallest ESS).
import type { StudyCell, StudyResult } from "./study.ts";

const f = (v: number, d: number) => (Number.isFinite(v) ? v.toFixed(d) : String(v));

/** Policies in the order given; calibration sizes in the order given; `rtn` repeats in every size column. */
function grid(r: StudyResult): {
  policies: string[];
  sizes: string[];
  at: (p: string, s: string) => StudyCell | undefined;
} {
  const policies = [...new Set(r.cells.map((c) => c.policy))];
  const sizes = [...new Set(r.cells.filter((c) => c.calib !== "-").map((c) => c.calib))];
  const at = (p: string, s: string) => r.cells.find((c) => c.policy === p && (c.calib === s || c.calib === "-"));
  return { policies, sizes: sizes.length ? sizes : ["-"], at };
}

export function formatStudyMarkdown(r: StudyResult): string {
  const { policies, sizes, at } = grid(r);
  const out: string[] = [];
  const s = r.settings;
  out.push(
    `${r.arch} (${r.model}) — ${String(s.algorithm).toUpperCase()} W${s.bits} g${s.groupSize} ${s.symmetric ? "sym" : "asym"}, experts only, full-precision propagation; eval ${s.eval} (${r.evalTokens} scored tokens), calib ${s.calib}, zero-token fallback ${s.zeroTokenFallback}`,
    "",
  );
  out.push(`| policy | ${sizes.map((z) => `${z}: mean KLD | p99 | same-top`).join(" | ")} |`);
  out.push(`|---|${sizes.map(() => "---|---|---").join("|")}|`);
  const best = new Map(
    sizes.map((z) => [z, Math.min(...policies.map((p) => at(p, z)?.kld.mean ?? Number.POSITIVE_INFINITY))]),
  );
  for (const p of policies) {
    const cols = sizes.map((z) => {
      const c = at(p, z);
      if (!c) return "— | — | —";
      const m = `${f(c.kld.mean, 5)} ± ${f(c.kld.uncertainty, 5)}`;
      return `${c.kld.mean === best.get(z) ? `**${m}**` : m} | ${f(c.kld.p99, 4)} | ${f(c.sameTop * 100, 2)}%`;
    });
    out.push(`| ${p} | ${cols.join(" | ")} |`);
  }
  out.push(
    "",
    `Coverage (over all MoE layers; threshold ${r.minTokens} routed tokens): experts without calibration tokens → RTN / below threshold (routed) / min ESS / median ESS`,
    "",
  );
  out.push(`| policy | ${sizes.join(" | ")} |`);
  out.push(`|---|${sizes.map(() => "---").join("|")}|`);
  for (const p of policies) {
    if (p === "rtn") continue;
    const cols = sizes.map((z) => {
      const c = at(p, z)?.coverage;
      return c
        ? `${c.uncalibrated}/${c.experts} → RTN, ${c.belowMin} below, ESS min ${f(c.minEss, 1)}, median ${f(c.medianEss, 0)}`
        : "—";
    });
    out.push(`| ${p} | ${cols.join(" | ")} |`);
  }
  out.push(
    "",
    "Statistics per policy (summed over MoE layers: the policy's weights, then per expert the forward of its rows and both Hessians; GPTQ excluded): seconds, expert rows (× routed's); experts calibrated routed / blended / fallback",
    "",
  );
  out.push(`| policy | ${sizes.join(" | ")} |`);
  out.push(`|---|${sizes.map(() => "---").join("|")}|`);
  for (const p of policies) {
    if (p === "rtn") continue;
    const cols = sizes.map((z) => {
      const c = at(p, z);
      if (!c?.statistics || !c.coverage) return "—";
      const routed = at("routed", z)?.statistics;
      const x = (v: number, r: number) => (r > 0 ? ` (${f(v / r, 2)}×)` : "");
      const k = c.coverage;
      return `${f(c.statistics.seconds, 2)} s${x(c.statistics.seconds, routed?.seconds ?? 0)}, ${c.statistics.rows} rows${x(c.statistics.rows, routed?.rows ?? 0)}; ${k.routedOnly} / ${k.blended} / ${k.uncalibrated}`;
    });
    out.push(`| ${p} | ${cols.join(" | ")} |`);
  }
  return out.join("\n");
}
