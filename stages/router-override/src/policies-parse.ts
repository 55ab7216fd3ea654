// Policy specs as users write them (`--policy`, `moeq study --policies`): a fixed name, `fill:N`,
// `mix:λ` or `external:<command>`, and the zero-token fallback wrapper.
import type { Routing } from "@moeq/models";
import { externalPolicy } from "./external-policy.ts";
import {
  type CalibrationPolicy,
  DEFAULT_POLICY,
  fillPolicy,
  mixPolicy,
  type PolicyInput,
  policies,
  topupPolicy,
} from "./policies.ts";
import { PolicyError } from "./policies-errors.ts";

export const POLICY_NAMES = [
  "default (= topup)",
  "topup[:N]",
  "routed",
  "all",
  "soft",
  "soft2",
  "routed-w2",
  "fill:N",
  "mix:λ",
  "external:<command>",
] as const;

export interface ParseOptions {
  /** where the external policy exchanges its tensor files */
  readonly scratchDir?: string;
  /** the external process's stderr lines (the stage log) */
  readonly log?: (line: string) => void;
}

export function parsePolicy(spec: string, o: ParseOptions = {}): CalibrationPolicy {
  const fixed = policies.get(spec === "default" ? DEFAULT_POLICY : spec);
  if (fixed) return fixed;
  const topup = /^topup:(\d+)$/.exec(spec);
  if (topup) {
    const n = Number(topup[1]);
    if (n < 1 || !Number.isSafeInteger(n))
      throw new PolicyError({ source: "policy", message: `policy ${spec}: N must be a positive integer` });
    return topupPolicy(n);
  }
  const fill = /^fill:(\d+)$/.exec(spec);
  if (fill) {
    const n = Number(fill[1]);
    if (n < 1 || !Number.isSafeInteger(n))
      throw new PolicyError({ source: "policy", message: `policy ${spec}: N must be a positive integer` });
    return fillPolicy(n);
  }
  const mix = /^mix:(.+)$/.exec(spec);
  if (mix) {
    const l = Number(mix[1]);
    if (!/^\d*\.?\d+$/.test(mix[1]) || !(l >= 0 && l <= 1))
      throw new PolicyError({ source: "policy", message: `policy ${spec}: λ must be a number in [0, 1]` });
    return mixPolicy(l);
  }
  if (spec.startsWith("external:")) {
    const command = spec.slice("external:".length).trim();
    if (!command)
      throw new PolicyError({
        source: "policy",
        message: `policy ${spec}: give the command, e.g. external:/abs/path/policy.mjs`,
      });
    return externalPolicy(command, o);
  }
  throw new PolicyError({
    source: "policy",
    message: `unknown calibration policy ${JSON.stringify(spec)} (known: ${POLICY_NAMES.join(", ")})`,
  });
}

/**
 * Experts that a policy gives no calibration token: with fallback `rtn` they stay empty (the
 * calibrator quantizes them with RTN and says so); with a policy, their column comes from it.
 * Either way the choice is the run's option and is reported, never implicit.
 */
export function withZeroTokenFallback(
  policy: CalibrationPolicy,
  fallback: CalibrationPolicy | "rtn",
): CalibrationPolicy {
  if (fallback === "rtn") return policy;
  return {
    name: policy.name,
    async weights(r: Routing, i: PolicyInput) {
      const w = await policy.weights(r, i);
      const E = r.numExperts;
      const empty: number[] = [];
      for (let e = 0; e < E; e++) {
        let any = false;
        for (let t = 0; t < r.rows && !any; t++) any = w[t * E + e] > 0;
        if (!any) empty.push(e);
      }
      if (empty.length === 0) return w;
      const f = await fallback.weights(r, i);
      for (const e of empty) for (let t = 0; t < r.rows; t++) w[t * E + e] = f[t * E + e];
      return w;
    },
    close: async () => {
      await policy.close?.();
      await fallback.close?.();
    },
  };
}

/** Checks a policy's answer: [rows, E], finite, ≥ 0. */
export function checkWeights(w: Float32Array, r: Routing, source: string): Float32Array {
  if (!(w instanceof Float32Array) || w.length !== r.rows * r.numExperts)
    throw new PolicyError({
      source,
      message: `${source}: expected ${r.rows}×${r.numExperts} weights, got ${(w as { length?: number })?.length ?? typeof w}`,
    });
  for (let i = 0; i < w.length; i++)
    if (!(w[i] >= 0) || !Number.isFinite(w[i]))
      throw new PolicyError({
        source,
        message: `${source}: weight of token ${Math.floor(i / r.numExperts)} for expert ${i % r.numExperts} is ${w[i]} (must be finite and ≥ 0)`,
      });
  return w;
}
