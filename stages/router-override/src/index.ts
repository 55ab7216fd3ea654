export { type CalibrationPolicy, coverage, policies, routedPolicy } from "./policies.ts";
export { type RoutePlan, type RouteRequest, routeSubject, runRouter } from "./router.ts";
