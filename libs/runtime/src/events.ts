// Deterministic identity of events: the key of an event is what makes it unique in a run (e.g.
// ExpertQuantized/3/17/down_proj); it is the event's Nats-Msg-Id (prefixed by the run id), so a
// stage that redoes work after a restart appends nothing twice.
import type { Event, NewEvent } from "@moeq/contracts";

export function eventKey(e: Pick<Event, "type" | "payload"> | NewEvent): string {
  const p = e.payload as Record<string, unknown>;
  switch (e.type) {
    case "LayerLoaded":
    case "RoutingPlanned":
    case "LayerCompleted":
    case "LayerPacked":
      return `${e.type}/${p.layer}`;
    case "ExpertCalibrated":
    case "ExpertQuantized":
      return `${e.type}/${p.layer}/${p.expert}/${p.proj}`;
    case "ShardWritten":
      return `${e.type}/${p.file}`;
    case "StageStarted":
      return `${e.type}/${p.stage}/${p.instance}/${p.pid}`;
    case "StageFailed":
      return `${e.type}/${p.stage}/${p.instance}/${(p.error as { message: string }).message.slice(0, 64)}`;
    default:
      return e.type;
  }
}

/** Module name of a projection (what the checkpoint calls `<module>.weight`). */
export const expertKey = (layer: number, expert: number, proj: string) => `${layer}/${expert}/${proj}`;

/**
 * Each stage's span in a run's events: its first and last event times (ms since the epoch), in
 * the order the stages first appear; the supervisor's "run" events are not a stage. The run
 * summary's and the report's stage timings.
 */
export function stageSpans(
  events: readonly Pick<Event, "stage" | "time">[],
): Map<string, { from: number; to: number }> {
  const span = new Map<string, { from: number; to: number }>();
  for (const e of events) {
    if (e.stage === "run") continue;
    const t = Date.parse(e.time);
    const s = span.get(e.stage) ?? { from: t, to: t };
    s.from = Math.min(s.from, t);
    s.to = Math.max(s.to, t);
    span.set(e.stage, s);
  }
  return span;
}
