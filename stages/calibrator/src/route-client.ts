// Asks the router-override stage for a layer's routing plan. Request/reply is retried until a
// router answers: a router that was killed mid-request is restarted by the supervisor, and the
// retried request gets the same (deterministic) plan.
import { setTimeout as sleep } from "node:timers/promises";
import { packValue, type TensorDescriptor, unpackValue } from "@moeq/contracts";
import { type StageContext, StageError } from "@moeq/runtime";
import { Result } from "effect";

export interface RoutePlan {
  readonly indices: TensorDescriptor;
  readonly weights: TensorDescriptor;
  readonly calib: TensorDescriptor;
}

export async function requestPlan(
  ctx: StageContext,
  layer: number,
  x: TensorDescriptor,
  firstTimeoutMs = 10_000,
): Promise<RoutePlan> {
  const subject = `moeq.${ctx.runId}.rpc.route`;
  for (let attempt = 0; ; attempt++) {
    try {
      // A router killed mid-request never answers: time out and ask again (a restarted router
      // computes the same plan); the timeout doubles so a slow router on a big layer gets there.
      const timeout = Math.min(600_000, firstTimeoutMs * 2 ** Math.min(attempt, 6));
      const reply = await ctx.bus.nc.request(subject, packValue({ layer, x }), { timeout });
      const r = unpackValue(reply.data, `${subject} reply`);
      if (Result.isFailure(r)) throw r.failure;
      const v = r.success as { ok: boolean; plan?: RoutePlan; error?: { tag: string; message: string } };
      if (!v.ok || !v.plan)
        throw new StageError({
          stage: ctx.stage,
          message: `router-override failed for layer ${layer}: ${v.error?.message ?? "no plan"}`,
          permanent: true,
        });
      return v.plan;
    } catch (e) {
      if ((e as { _tag?: string })._tag === "StageError") throw e;
      // no responders / timeout: the router is (re)starting
      if (attempt % 10 === 0) ctx.say(`waiting for router-override (layer ${layer}): ${(e as Error).message}`);
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
    }
  }
}
