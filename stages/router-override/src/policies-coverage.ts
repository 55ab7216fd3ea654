// What coverage tables say to a user: experts below the token threshold (their statistics rest on
// few samples), experts without any calibration token and what happens to them, and a per-layer
// digest for summaries and the study table.
import type { Coverage } from "./policies.ts";

export interface CoverageRules {
  readonly policy: string;
  /** fewer routed tokens than this draws a warning (default: the expert's input width) */
  readonly minTokens: number;
  /** `rtn` or the policy that fills experts the policy leaves empty */
  readonly fallback: string;
}

export function coverageWarnings(layer: number, cov: readonly Coverage[], rules: CoverageRules): string[] {
  const out: string[] = [];
  const low = cov.filter((c) => c.tokensRouted < rules.minTokens);
  if (low.length)
    out.push(
      `layer ${layer}: ${low.length} experts have fewer than ${rules.minTokens} routed tokens: ${low.map((c) => `E${c.expert}(${c.tokensRouted})`).join(" ")}`,
    );
  const empty = cov.filter((c) => c.tokensUsed === 0);
  if (empty.length)
    out.push(
      `layer ${layer}: ${empty.length} experts get no calibration token under ${rules.policy} → RTN: ${empty.map((c) => `E${c.expert}`).join(" ")}`,
    );
  const filled = cov.filter((c) => c.tokensRouted === 0 && c.tokensUsed > 0);
  if (filled.length && rules.policy === "routed" && rules.fallback !== "rtn")
    out.push(
      `layer ${layer}: ${filled.length} experts without routed tokens calibrated by the fallback ${rules.fallback}: ${filled.map((c) => `E${c.expert}`).join(" ")}`,
    );
  return out;
}

export interface CoverageDigest {
  readonly experts: number;
  /** experts with no routed token */
  readonly unrouted: number;
  /** experts below the threshold of routed tokens */
  readonly belowMin: number;
  /** experts with no calibration token under the policy (→ RTN) */
  readonly uncalibrated: number;
  /** experts calibrated on exactly their routed tokens */
  readonly routedOnly: number;
  /** experts calibrated on their routed tokens (if any) and tokens the router did not send them */
  readonly blended: number;
  readonly minRouted: number;
  readonly minUsed: number;
  readonly minEss: number;
  readonly medianEss: number;
}

export function digestCoverage(cov: readonly Coverage[], minTokens: number): CoverageDigest {
  const ess = cov.map((c) => c.ess).sort((a, b) => a - b);
  return {
    experts: cov.length,
    unrouted: cov.filter((c) => c.tokensRouted === 0).length,
    belowMin: cov.filter((c) => c.tokensRouted < minTokens).length,
    uncalibrated: cov.filter((c) => c.tokensUsed === 0).length,
    routedOnly: cov.filter((c) => c.calibration === "routed").length,
    blended: cov.filter((c) => c.calibration === "blended").length,
    minRouted: cov.length ? Math.min(...cov.map((c) => c.tokensRouted)) : 0,
    minUsed: cov.length ? Math.min(...cov.map((c) => c.tokensUsed)) : 0,
    minEss: ess[0] ?? 0,
    medianEss: ess.length ? ess[Math.floor((ess.length - 1) / 2)] : 0,
  };
}
