// The run's event log: append with optimistic concurrency and Nats-Msg-Id dedupe, replay, fold.
// An event's envelope `seq` always equals its stream sequence: the writer computes it from the
// sequence it expects to follow, and the server refuses the append if that expectation is stale.

import { decode, Event, encode, type InvalidMessage, type MalformedMessage, type NewEvent } from "@moeq/contracts";
import { DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { Result } from "effect";
import { streamReplicas } from "./cluster.ts";
import type { Bus } from "./connection.ts";
import { AppendConflict, BusFailed, errorText } from "./errors.ts";
import { ensureRunStreams, type RunStreamOptions } from "./streams.ts";
import { streams, subjects } from "./subjects.ts";

export interface AppendOptions {
  /** Fail with AppendConflict unless the log's last sequence is exactly this. */
  readonly expectedLastSeq?: number;
  /** Dedupe key (default: none). Use a deterministic id so a retried append is dropped. */
  readonly msgId?: string;
  readonly traceparent?: string;
  readonly tracestate?: string;
}

export interface Appended {
  readonly seq: number;
  readonly duplicate: boolean;
}

/** How long `follow` waits without a delivery, while the stream has more, before it replaces its consumer. */
const FOLLOW_STALL_MS = 8000;

const isWrongLastSeq = (e: unknown) =>
  (e as { code?: unknown })?.code === 10071 || /wrong last sequence/i.test(errorText(e));

export class RunEventLog {
  private constructor(
    private readonly bus: Bus,
    readonly runId: string,
  ) {}

  static async open(bus: Bus, runId: string, o: RunStreamOptions = {}): Promise<RunEventLog> {
    await ensureRunStreams(bus.jsm, runId, { replicas: streamReplicas(bus.nc), ...o });
    return new RunEventLog(bus, runId);
  }

  get stream(): string {
    return streams.events(this.runId);
  }

  async lastSeq(): Promise<number> {
    return (await this.bus.jsm.streams.info(this.stream)).state.last_seq;
  }

  /**
   * Appends one event. With expectedLastSeq: one attempt, AppendConflict when another writer got
   * there first. Without: retries on conflicts (each retry re-reads the last sequence).
   */
  async append(stage: string, event: NewEvent, o: AppendOptions = {}): Promise<Appended> {
    const pinned = o.expectedLastSeq !== undefined;
    for (let attempt = 0; attempt < 100; attempt++) {
      const expected = pinned ? o.expectedLastSeq! : await this.lastSeq();
      const envelope = {
        runId: this.runId,
        seq: expected + 1,
        stage,
        time: new Date().toISOString(),
        ...(o.traceparent ? { traceparent: o.traceparent } : {}),
        type: event.type,
        payload: event.payload,
      } as Event;
      const bytes = encode(Event, envelope);
      const h = headers();
      h.set("moeq-type", event.type);
      if (o.traceparent) h.set("traceparent", o.traceparent);
      if (o.tracestate) h.set("tracestate", o.tracestate);
      try {
        const ack = await this.bus.js.publish(subjects.event(this.runId, event.type), bytes, {
          expect: { lastSequence: expected },
          headers: h,
          ...(o.msgId ? { msgID: o.msgId } : {}),
        });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (e) {
        if (!isWrongLastSeq(e))
          throw new BusFailed({
            operation: "append",
            message: `append ${event.type} to ${this.stream}: ${errorText(e)}`,
          });
        if (pinned)
          throw new AppendConflict({
            stream: this.stream,
            expected,
            message: `append ${event.type} to ${this.stream}: the log moved past sequence ${expected}`,
          });
      }
    }
    throw new BusFailed({
      operation: "append",
      message: `append ${event.type} to ${this.stream}: too much contention`,
    });
  }

  private decodeMsg(m: JsMsg): Event {
    const r = decode(Event, m.data, `${this.stream}#${m.seq} (${m.subject})`);
    if (Result.isFailure(r)) throw r.failure;
    return r.success;
  }

  /** Events with fromSeq ≤ seq ≤ the last sequence at the time of the call, in order. */
  async read(fromSeq = 1): Promise<Event[]> {
    const last = await this.lastSeq();
    const out: Event[] = [];
    if (last < fromSeq) return out;
    const c = await startWhileElecting(() =>
      this.bus.js.consumers.get(this.stream, {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: fromSeq,
      }),
    );
    const msgs = await c.consume();
    try {
      for await (const m of msgs) {
        out.push(this.decodeMsg(m));
        if (m.seq >= last) break;
      }
    } finally {
      msgs.stop();
      await c.delete().catch(() => undefined);
    }
    return out;
  }

  /** Replays the whole log through a reducer (what a restarted stage does). */
  async fold<S>(reduce: (s: S, e: Event) => S, initial: S): Promise<S> {
    return (await this.read(1)).reduce(reduce, initial);
  }

  /**
   * Live: calls onEvent for every event from fromSeq on, in order, until stop(). A decode failure
   * (which appends prevent) is reported through onError and skipped.
   */
  async follow(
    fromSeq: number,
    onEvent: (e: Event) => void,
    onError: (e: MalformedMessage | InvalidMessage) => void = () => undefined,
  ): Promise<{ stop(): Promise<void> }> {
    let next = Math.max(1, fromSeq);
    const start = async () => {
      const c = await this.bus.js.consumers.get(this.stream, {
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: next,
      });
      const msgs = await c.consume();
      const loop = (async () => {
        for await (const m of msgs) {
          // A replacement consumer (see the watchdog) may overlap the old one: deliver each once.
          if (m.seq < next) continue;
          next = m.seq + 1;
          try {
            onEvent(this.decodeMsg(m));
          } catch (e) {
            if (
              (e as { _tag?: string })._tag === "MalformedMessage" ||
              (e as { _tag?: string })._tag === "InvalidMessage"
            )
              onError(e as MalformedMessage);
            else throw e;
          }
        }
      })();
      return { c, msgs, loop };
    };
    let cur = await startWhileElecting(start);
    // An ordered consumer is R1: on a cluster it lives on one server, and when that server dies the
    // client does not always get it back. When the stream has events we have not delivered and
    // nothing arrived for a while, follow on with a fresh consumer from the next sequence.
    let seen = next;
    let quietSince = Date.now();
    let checking = false;
    const watchdog = setInterval(() => {
      if (next !== seen) {
        seen = next;
        quietSince = Date.now();
        return;
      }
      if (checking || Date.now() - quietSince < FOLLOW_STALL_MS) return;
      checking = true;
      void (async () => {
        try {
          const last = (await this.bus.jsm.streams.info(this.stream)).state.last_seq;
          if (last < next) return;
          const old = cur;
          cur = await start();
          old.msgs.stop();
          void old.c.delete().catch(() => undefined);
        } catch {
          // the cluster is still electing: try again on the next tick
        } finally {
          quietSince = Date.now();
          checking = false;
        }
      })();
    }, 1000);
    watchdog.unref();
    return {
      stop: async () => {
        clearInterval(watchdog);
        cur.msgs.stop();
        await cur.loop.catch(() => undefined);
        await cur.c.delete().catch(() => undefined);
      },
    };
  }
}

// Right after a cluster node dies, creating a consumer can time out or find no responders until
// the stream's new leader is elected (seconds). That is not a failure of the stage: retry for up
// to ~40 s; any other error, or one that outlasts the election, is thrown as it is.
const TRANSIENT = /timeout|no responders|503|leader|unavailable|TIMEOUT/i;
async function startWhileElecting<T>(start: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 40_000;
  for (let wait = 250; ; wait = Math.min(wait * 2, 4_000)) {
    try {
      return await start();
    } catch (e) {
      const text = `${(e as Error)?.name ?? ""} ${(e as Error)?.message ?? ""} ${(e as { code?: unknown })?.code ?? ""}`;
      if (!TRANSIENT.test(text) || Date.now() + wait > deadline) throw e;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
