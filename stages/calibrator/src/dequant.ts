// --propagate quantized: the layer's weights as the quantizer left them (scale·(code − zero)),
// overlaid on the full-precision source, so the next layer sees what the packed model computes.
import type { EventOf } from "@moeq/contracts";
import { overlaySource, type WeightSource } from "@moeq/models";
import { dequantizeInt, type QuantTarget, readIntOutputs, type StageContext, StageError, targetKey } from "@moeq/runtime";
import { f32Tensor, type Tensor } from "@moeq/tensor";

export function dequantOverlay(
  ctx: StageContext,
  base: WeightSource,
  targets: readonly QuantTarget[],
  events: readonly EventOf<"ExpertQuantized">[],
): WeightSource {
  const byKey = new Map(events.map((e) => [targetKey(e.payload), e]));
  const overrides = new Map<string, Tensor>();
  for (const t of targets) {
    const ev = byKey.get(targetKey(t));
    if (!ev) throw new StageError({ stage: ctx.stage, message: `no ExpertQuantized for ${targetKey(t)}` });
    overrides.set(t.tensor, f32Tensor(dequantizeInt(readIntOutputs(ctx.reader, ev, t), t.rows, t.cols), [t.rows, t.cols]));
  }
  return overlaySource(base, overrides);
}
