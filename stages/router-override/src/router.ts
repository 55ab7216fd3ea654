// The router-override stage: answers the calibrator's routing requests (layer + MoE input by
// descriptor) over NATS request/reply with the real routing and the policy's calibration
// weights, written as tensor files; appends RoutingPlanned with the coverage table. Stateless,
// so a restarted instance answers the calibrator's retried request the same way.
import { join } from "node:path";
import { packValue, type TensorDescriptor, unpackValue } from "@moeq/contracts";
import { buildSpec, Engine, type RawConfig } from "@moeq/models";
import { descriptorSource, type StageContext, StageError, telemetry as tracing, writeTensorFile } from "@moeq/runtime";
import { Result } from "effect";
import { coverage } from "./policies.ts";
import { coverageWarnings } from "./policies-coverage.ts";
import { checkWeights, parsePolicy, withZeroTokenFallback } from "./policies-parse.ts";

export const routeSubject = (runId: string) => `moeq.${runId}.rpc.route`;

export interface RouteRequest {
  readonly layer: number;
  readonly x: TensorDescriptor;
}

export interface RoutePlan {
  readonly indices: TensorDescriptor;
  readonly weights: TensorDescriptor;
  readonly calib: TensorDescriptor;
}

export async function runRouter(ctx: StageContext): Promise<void> {
  const opened = await ctx.waitFor("ModelOpened");
  const { spec } = buildSpec(opened.payload.config as RawConfig, "ModelOpened.config");
  const dir = join(ctx.paths.tensors, "route");
  const parseOpts = { scratchDir: join(ctx.paths.tensors, "policy"), log: ctx.say };
  let policy: ReturnType<typeof parsePolicy>;
  try {
    // a graph may pick the policy for its router (e.g. a user's external process)
    const spec = typeof ctx.stageOptions.policy === "string" ? ctx.stageOptions.policy : ctx.options.policy;
    const fb = ctx.options.zeroTokenFallback ?? "rtn";
    policy = withZeroTokenFallback(parsePolicy(spec, parseOpts), fb === "rtn" ? "rtn" : parsePolicy(fb, parseOpts));
  } catch (e) {
    throw new StageError({ stage: ctx.stage, message: (e as Error).message, permanent: true });
  }
  const sub = ctx.bus.nc.subscribe(routeSubject(ctx.runId), { queue: "router-override" });
  ctx.say(`serving ${routeSubject(ctx.runId)} with policy ${policy.name}`);
  try {
    for await (const m of sub) {
      try {
        const raw = unpackValue(m.data, m.subject);
        if (Result.isFailure(raw)) throw raw.failure;
        const req = raw.success as RouteRequest;
        const L = req.layer;
        const loaded = await ctx.waitFor("LayerLoaded", (e) => e.payload.layer === L);
        const engine = new Engine(spec, descriptorSource(ctx.reader, new Map(Object.entries(loaded.payload.tensors))));
        const x = ctx.reader.f32(req.x, `route request layer ${L}: x`);
        ctx.say(`planning layer ${L}`);
        await ctx.pause();
        const r = await tracing.layerSpan(L, () =>
          tracing.projectionSpan("route", { layer: L }, async (span) => {
            const routed = await engine.router(L, x);
            tracing.setWork(span, { tokensRouted: routed.rows * routed.topK });
            return routed;
          }),
        );
        const routingSpec = spec.layers[L].mlp.kind === "moe" ? spec.layers[L].mlp.routing : undefined;
        if (!routingSpec)
          throw new StageError({
            stage: ctx.stage,
            message: `route request for layer ${L}, which is not a MoE layer`,
            permanent: true,
          });
        const calib = checkWeights(
          await policy.weights(r, { layer: L, spec: routingSpec, hiddenSize: spec.hiddenSize }),
          r,
          `policy ${policy.name} (layer ${L})`,
        );
        const cov = coverage(r, calib);
        for (const w of coverageWarnings(L, cov, {
          policy: policy.name,
          minTokens: ctx.options.minExpertTokens || spec.hiddenSize,
          fallback: ctx.options.zeroTokenFallback ?? "rtn",
        }))
          ctx.say(`warning: ${w}`);
        const plan: RoutePlan = {
          indices: writeTensorFile(dir, `L${L}.indices.bin`, "i32", [r.rows, r.topK], r.indices),
          weights: writeTensorFile(dir, `L${L}.weights.bin`, "f32", [r.rows, r.topK], r.weights),
          calib: writeTensorFile(dir, `L${L}.calib.bin`, "f32", [r.rows, r.numExperts], calib),
        };
        await ctx.emit({
          type: "RoutingPlanned",
          payload: { layer: L, policy: policy.name, tokens: r.rows, coverage: cov },
        });
        m.respond(packValue({ ok: true, plan }));
        ctx.say(`planned layer ${L}: ${r.rows} tokens`);
      } catch (e) {
        ctx.say(`request failed: ${(e as Error).message}`);
        m.respond(
          packValue({
            ok: false,
            error: { tag: (e as { _tag?: string })._tag ?? "Error", message: (e as Error).message },
          }),
        );
      }
    }
  } finally {
    await policy.close?.();
  }
}
