// The study's grid as users write it: `--policies routed,all,soft,mix:0.3,rtn` and
// `--calib-sizes 16x256,128x256`.
import { PolicyError, parsePolicy } from "@moeq/stage-router-override";
import { StudyOptionsError } from "./errors.ts";

export interface CalibSize {
  readonly windows: number;
  readonly seqLen: number;
  /** as written, e.g. 16x256 */
  readonly label: string;
}

export function parseCalibSizes(s: string): CalibSize[] {
  const parts = s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (parts.length === 0)
    throw new StudyOptionsError({
      field: "calib-sizes",
      message: "--calib-sizes: give at least one NxT, e.g. 16x256,128x256",
    });
  return parts.map((p) => {
    const m = /^(\d+)x(\d+)$/.exec(p);
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 2)
      throw new StudyOptionsError({
        field: "calib-sizes",
        message: `--calib-sizes: ${JSON.stringify(p)} is not NxT (windows × tokens, T ≥ 2)`,
      });
    return { windows: Number(m[1]), seqLen: Number(m[2]), label: p };
  });
}

/** `rtn` is the uncalibrated baseline (one row, independent of the calibration size). */
export function parsePolicyList(s: string): string[] {
  const list = s
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (list.length === 0)
    throw new StudyOptionsError({ field: "policies", message: "--policies: give at least one policy" });
  const seen = new Set<string>();
  for (const p of list) {
    // `default` and `topup` are one policy: the same row twice
    const name = p === "rtn" || p.startsWith("external:") ? p : parsed(p).name;
    if (seen.has(name))
      throw new StudyOptionsError({ field: "policies", message: `--policies: ${p} (${name}) is listed twice` });
    seen.add(name);
  }
  return list;
}

function parsed(p: string) {
  try {
    return parsePolicy(p);
  } catch (e) {
    throw new StudyOptionsError({
      field: "policies",
      message: `--policies: ${e instanceof PolicyError ? e.message : String(e)}`,
    });
  }
}

/** The calibration text spec of one size: `brown` → `brown:16x256`, `random` → `random:16x256`, `a.jsonl` → `a.jsonl:16x256`. */
export function calibSpec(text: string, size: CalibSize): string {
  const base = text.replace(/:\d+x\d+$/, "");
  return `${base}:${size.label}`;
}
