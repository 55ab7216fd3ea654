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
