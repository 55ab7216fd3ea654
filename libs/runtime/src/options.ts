// The run's options: what `moeq quantize` flags and graph options resolve to, validated once by
// the supervisor before any work and carried in RunStarted, so every stage (and a resumed run)
// sees the same values.
import { CudaUnavailable, cudaKernels, InvalidDevice, parseDevice } from "@moeq/native";
import { OptionsError } from "./errors.ts";
import { FORMATS, type FormatOption, SCHEME_INFO, SCHEMES, type SchemeName } from "./schemes.ts";

export type Algorithm = "rtn" | "gptq";
export type Targets = "experts" | "experts+attention" | "all-linear";
export type Propagate = "fp" | "quantized";
export const POLICIES = ["default", "topup", "routed", "all", "soft", "soft2", "routed-w2"] as const;
/** a fixed name, fill:N, mix:λ (0 ≤ λ ≤ 1) or external:<command> (stages/router-override parses it) */
export type PolicyName = string;
const POLICY_SPEC =
  /^(default|topup(:[1-9]\d*)?|routed|all|soft|soft2|routed-w2|fill:[1-9]\d*|mix:(0(\.\d+)?|1(\.0*)?|\.\d+)|external:\S.*)$/;

export interface RunOptions {
  readonly bits: number;
  readonly groupSize: number;
  readonly symmetric: boolean;
  readonly algorithm: Algorithm;
  readonly policy: PolicyName;
  /** experts the policy gives no token: `rtn`, or a policy that fills their statistics */
  readonly zeroTokenFallback: PolicyName;
  /** coverage warning threshold (tokens routed to an expert); 0 = the expert's input width */
  readonly minExpertTokens: number;
  /** calibration text spec (brown, brown:NxT, file.txt, file.jsonl[:NxT], random:NxT) */
  readonly calib: string;
  /** evaluation text spec (same forms; Brown uses the held-out split) */
  readonly eval: string;
  readonly targets: Targets;
  readonly propagate: Propagate;
  readonly format: FormatOption;
  /** w4a16/w8a16 (int, from --bits when not given) or a float scheme (src/schemes.ts) */
  readonly scheme: SchemeName;
  readonly seed: number;
  /** GPTQ dampening, fraction of mean(diag H) */
  readonly damp: number;
  readonly actOrder: boolean;
  /** windows per forward batch in calibration and evaluation (bounds activation memory) */
  readonly batchWindows: number;
  /** quantizer replicas of the default graph */
  readonly quantizers: number;
  readonly maxShardBytes: number;
  /** where the calibrator's Hessians and the quantizer's GPTQ run: cpu, cuda or cuda:N */
  readonly device: string;
  /** keep every layer's work-dir artifacts (activations, Hessians, plans, quantizer outputs) after
   *  the packer has written the layer (default: deleted then, so the work dir holds ~2 layers) */
  readonly keepArtifacts: boolean;
}

export const DEFAULT_OPTIONS: RunOptions = {
  bits: 4,
  groupSize: 32,
  symmetric: true,
  algorithm: "gptq",
  // topup (= `default`): within 2 % of the best fixed policy at every calibration size on two
  // trained models (docs/calibration.md, "The default: topup")
  policy: "topup",
  zeroTokenFallback: "rtn",
  minExpertTokens: 0,
  calib: "brown:128x256",
  eval: "brown:64x256",
  targets: "experts",
  propagate: "fp",
  format: "compressed-tensors",
  scheme: "w4a16",
  seed: 0,
  damp: 0.01,
  actOrder: false,
  batchWindows: 16,
  quantizers: 2,
  maxShardBytes: 5 * 1024 ** 3,
  device: "cpu",
  keepArtifacts: false,
};

const fail = (field: string, message: string): never => {
  throw new OptionsError({ field, message: `option ${field}: ${message}` });
};

const intIn = (field: string, v: unknown, lo: number, hi: number): number => {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
    fail(field, `expected an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  return v as number;
};

const oneOf = <T extends string>(field: string, v: unknown, allowed: readonly T[]): T => {
  if (typeof v !== "string" || !allowed.includes(v as T))
    fail(field, `expected one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  return v as T;
};

const policySpec = (field: string, v: unknown): string => {
  if (typeof v !== "string" || !POLICY_SPEC.test(v))
    fail(
      field,
      `expected ${POLICIES.join(", ")}, fill:N, mix:λ (0 ≤ λ ≤ 1) or external:<command>, got ${JSON.stringify(v)}`,
    );
  return v as string;
};

/** A valid device that this build and machine can use, so `--device cuda` fails before any work. */
const deviceOption = (v: unknown): string => {
  if (typeof v !== "string") return fail("device", `expected cpu, cuda or cuda:N, got ${JSON.stringify(v)}`);
  try {
    const d = parseDevice(v);
    if (d.kind === "cuda") cudaKernels(d.index);
    return d.kind === "cpu" ? "cpu" : `cuda:${d.index}`;
  } catch (e) {
    if (e instanceof InvalidDevice || e instanceof CudaUnavailable) return fail("device", e.message);
    throw e;
  }
};

const SPEC = /^(brown|brown:\d+x\d+|random:\d+x\d+|.+\.(txt|jsonl)(:\d+x\d+)?)$/i;

/** Merges `partial` over the defaults and checks every field; throws OptionsError naming the field. */
export function resolveOptions(partial: Partial<Record<keyof RunOptions, unknown>>): RunOptions {
  const known = new Set(Object.keys(DEFAULT_OPTIONS));
  for (const k of Object.keys(partial)) if (!known.has(k)) fail(k, `unknown option (known: ${[...known].join(", ")})`);
  const o = {
    ...DEFAULT_OPTIONS,
    ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)),
  } as Record<string, unknown>;
  // --scheme w4a16|w8a16 sets the bits; without --scheme the bits name the int scheme
  const schemeGiven = partial.scheme !== undefined;
  const scheme = schemeGiven ? oneOf("scheme", o.scheme, SCHEMES) : o.bits === 8 ? "w8a16" : "w4a16";
  const info = SCHEME_INFO[scheme];
  // a given option the scheme overrides or ignores is an error, never silently replaced
  if (schemeGiven && partial.bits !== undefined && partial.bits !== info.bits)
    fail(
      "bits",
      info.bits === undefined
        ? `--bits does not apply to scheme ${scheme} (its element format is fixed); drop --bits`
        : `--bits ${partial.bits} contradicts --scheme ${scheme} (${info.bits}-bit); give one of them`,
    );
  if (info.family !== "int" && partial.groupSize !== undefined)
    fail(
      "groupSize",
      `--group-size does not apply to scheme ${scheme} (its scale blocks are fixed: docs/formats.md); drop --group-size`,
    );
  if (info.bits !== undefined && schemeGiven) o.bits = info.bits;
  const format = oneOf("format", o.format, FORMATS);
  if (!info.formats.includes(format))
    fail("format", `${format} cannot store scheme ${scheme} (formats for ${scheme}: ${info.formats.join(", ")})`);
  if (info.staticInputs && o.algorithm === "rtn" && o.propagate !== "quantized")
    fail(
      "algorithm",
      `scheme ${scheme} needs the calibration pass for its static input scales; use --algo gptq (its Hessians are not used by the float scheme)`,
    );
  const bits = intIn("bits", o.bits, 2, 8);
  if (bits !== 4 && bits !== 8) fail("bits", `pack-quantized stores 4 or 8 bits, got ${bits}`);
  const groupSize = intIn("groupSize", o.groupSize, -1, 1 << 20);
  if (groupSize === 0 || groupSize < -1)
    fail("groupSize", `expected -1 (per channel) or a positive group size, got ${groupSize}`);
  if (typeof o.symmetric !== "boolean") fail("symmetric", `expected true or false, got ${JSON.stringify(o.symmetric)}`);
  if (typeof o.keepArtifacts !== "boolean")
    fail("keepArtifacts", `expected true or false, got ${JSON.stringify(o.keepArtifacts)}`);
  if (typeof o.actOrder !== "boolean") fail("actOrder", `expected true or false, got ${JSON.stringify(o.actOrder)}`);
  for (const f of ["calib", "eval"] as const)
    if (typeof o[f] !== "string" || !SPEC.test(o[f] as string))
      fail(
        f,
        `expected brown, brown:NxT, random:NxT, <file>.txt or <file>.jsonl (optionally :NxT), got ${JSON.stringify(o[f])}`,
      );
  if (typeof o.damp !== "number" || !(o.damp >= 0 && o.damp < 1))
    fail("damp", `expected a number in [0, 1), got ${JSON.stringify(o.damp)}`);
  return {
    bits,
    groupSize,
    symmetric: o.symmetric as boolean,
    algorithm: oneOf("algorithm", o.algorithm, ["rtn", "gptq"] as const),
    policy: policySpec("policy", o.policy),
    zeroTokenFallback: o.zeroTokenFallback === "rtn" ? "rtn" : policySpec("zeroTokenFallback", o.zeroTokenFallback),
    minExpertTokens: intIn("minExpertTokens", o.minExpertTokens, 0, 2 ** 31 - 1),
    calib: o.calib as string,
    eval: o.eval as string,
    targets: oneOf("targets", o.targets, ["experts", "experts+attention", "all-linear"] as const),
    propagate: oneOf("propagate", o.propagate, ["fp", "quantized"] as const),
    format,
    scheme,
    seed: intIn("seed", o.seed, 0, 2 ** 31 - 1),
    damp: o.damp as number,
    actOrder: o.actOrder as boolean,
    batchWindows: intIn("batchWindows", o.batchWindows, 1, 4096),
    quantizers: intIn("quantizers", o.quantizers, 1, 256),
    maxShardBytes: intIn("maxShardBytes", o.maxShardBytes, 1024, Number.MAX_SAFE_INTEGER),
    device: deviceOption(o.device),
    keepArtifacts: o.keepArtifacts as boolean,
  };
}
