export { EXTERNAL_PROTOCOL, type ExternalPolicyOptions, externalArgv, externalPolicy } from "./external-policy.ts";
export {
  type CalibrationPolicy,
  type Coverage,
  coverage,
  DEFAULT_POLICY,
  type ExpertCalibration,
  fillPolicy,
  mixPolicy,
  type PolicyInput,
  policies,
  routedPolicy,
  TOPUP_TARGET_PER_DIM,
  type TopupPlan,
  topupPolicy,
} from "./policies.ts";
export { type CoverageDigest, type CoverageRules, coverageWarnings, digestCoverage } from "./policies-coverage.ts";
export { PolicyError } from "./policies-errors.ts";
export { checkWeights, type ParseOptions, POLICY_NAMES, parsePolicy, withZeroTokenFallback } from "./policies-parse.ts";
export { routerProbabilities } from "./policies-probability.ts";
export { type RoutePlan, type RouteRequest, routeSubject, runRouter } from "./router.ts";
