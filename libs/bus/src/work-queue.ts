// Durable work queues: one WorkQueue-retention stream per run, one durable pull consumer per
// queue (filter moeq.<runId>.work.<queue>; nats-server 2.9 allows one filter subject). WorkQueue
// retention removes an item once acked, so "done" is visible in the stream itself and a queue
// can have many competing workers (any host) on the same durable consumer.

import {
  DeadLetter,
  type DeadLetter as DeadLetterT,
  decode,
  encode,
  type InvalidMessage,
  type MalformedMessage,
  WorkItem,
} from "@moeq/contracts";
import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { headers, nanos } from "@nats-io/transport-node";
import { Result } from "effect";
import { streamReplicas } from "./cluster.ts";
import type { Bus } from "./connection.ts";
import { BusFailed, errorText, PermanentFailure } from "./errors.ts";
import { ensureRunStreams, type RunStreamOptions } from "./streams.ts";
import { consumerName, streams, subjects } from "./subjects.ts";

export interface QueueOptions {
  /** Deliveries before an item is dead-lettered (default 5). */
  readonly maxDeliver?: number;
  /** Time a worker may hold an item without ack/working() before it is redelivered (default 30 s). */
  readonly ackWaitMs?: number;
  /** Delay before the n-th redelivery after a failure (last entry repeats; default 1 s, 5 s, 30 s). */
  readonly backoffMs?: ReadonlyArray<number>;
}

export interface WorkContext {
  readonly deliveryCount: number;
  readonly streamSeq: number;
  /** The trace context the item was published with (header, else the item's field). */
  readonly traceparent: string | undefined;
  /** When the item was stored in the stream (ms since the epoch): publish → receive is the queue wait. */
  readonly publishedAtMs: number;
  /** Resets the ack timer: call it during long kernels. */
  working(): void;
}

export type WorkHandler = (item: WorkItem, ctx: WorkContext) => Promise<void>;

export interface ConsumeOptions {
  /** Calls working() on this period while the handler runs (default: off). */
  readonly heartbeatMs?: number;
  /** Called for every item that was dead-lettered (for logs/tests); the worker keeps running. */
  readonly onDeadLetter?: (d: DeadLetterT) => void;
  /** Called for handler failures that will be retried. */
  readonly onRetry?: (item: WorkItem, error: unknown, deliveryCount: number) => void;
}

export interface Worker {
  stop(): Promise<void>;
}

/**
 * Errors that retrying cannot fix: PermanentFailure, or any error with `permanent: true`
 * (the store's DescriptorRejected and ChecksumMismatch carry it).
 */
export const isPermanent = (e: unknown): boolean =>
  e instanceof PermanentFailure || (e as { permanent?: unknown } | null)?.permanent === true;

const DEFAULTS = { maxDeliver: 5, ackWaitMs: 30_000, backoffMs: [1000, 5000, 30_000] };

export class RunWorkQueues {
  private constructor(
    private readonly bus: Bus,
    readonly runId: string,
  ) {}

  static async open(bus: Bus, runId: string, o: RunStreamOptions = {}): Promise<RunWorkQueues> {
    await ensureRunStreams(bus.jsm, runId, { replicas: streamReplicas(bus.nc), ...o });
    return new RunWorkQueues(bus, runId);
  }

  /** Creates the queue's durable consumer; idempotent when the options are unchanged. */
  async ensureQueue(queue: string, o: QueueOptions = {}): Promise<void> {
    const maxDeliver = o.maxDeliver ?? DEFAULTS.maxDeliver;
    const cfg = {
      durable_name: consumerName(queue),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: subjects.work(this.runId, queue),
      max_deliver: maxDeliver,
      ack_wait: nanos(o.ackWaitMs ?? DEFAULTS.ackWaitMs),
      max_ack_pending: 10_000,
    };
    try {
      await this.bus.jsm.consumers.info(streams.work(this.runId), cfg.durable_name);
      await this.bus.jsm.consumers.update(streams.work(this.runId), cfg.durable_name, {
        max_deliver: cfg.max_deliver,
        ack_wait: cfg.ack_wait,
      });
    } catch (e) {
      if (!/consumer not found|10014/i.test(errorText(e))) throw e;
      await this.bus.jsm.consumers.add(streams.work(this.runId), cfg);
    }
    this.options.set(queue, { maxDeliver, backoffMs: o.backoffMs ?? DEFAULTS.backoffMs });
  }

  /**
   * Makes every item a worker holds but never acked deliverable again now, instead of after the
   * queue's ack wait (minutes): each queue's consumer is recreated with its own settings, so the
   * unacked items of the work-queue stream are delivered from the start. Only for a supervisor
   * that knows no worker of the run is alive (a resumed run on its own embedded server); a live
   * worker's item would be done twice (harmless: results are deduplicated, but wasted).
   * Returns how many items were in flight.
   */
  async redeliverInFlight(): Promise<number> {
    const stream = streams.work(this.runId);
    let inFlight = 0;
    for await (const c of this.bus.jsm.consumers.list(stream)) {
      if (c.num_ack_pending === 0) continue;
      inFlight += c.num_ack_pending;
      const { name: _name, ...config } = c.config;
      await this.bus.jsm.consumers.delete(stream, c.name);
      await this.bus.jsm.consumers.add(stream, config);
    }
    return inFlight;
  }

  /**
   * A worker that did not create the queue takes its settings from the server (so it never
   * resets what the queue's owner configured); creates it with defaults if it does not exist.
   */
  private async adoptQueue(queue: string): Promise<void> {
    try {
      const info = await this.bus.jsm.consumers.info(streams.work(this.runId), consumerName(queue));
      this.options.set(queue, {
        maxDeliver: info.config.max_deliver ?? DEFAULTS.maxDeliver,
        backoffMs: DEFAULTS.backoffMs,
      });
    } catch (e) {
      if (!/consumer not found|10014/i.test(errorText(e))) throw e;
      await this.ensureQueue(queue);
    }
  }

  private readonly options = new Map<string, { maxDeliver: number; backoffMs: ReadonlyArray<number> }>();

  /** Publishes an item with its id as Nats-Msg-Id: a repeated publish is a no-op (`duplicate`). */
  async publish(
    queue: string,
    item: WorkItem,
    o: { traceparent?: string } = {},
  ): Promise<{ seq: number; duplicate: boolean }> {
    const h = headers();
    const tp = o.traceparent ?? item.traceparent;
    if (tp) h.set("traceparent", tp);
    h.set("moeq-kind", item.kind);
    try {
      const ack = await this.bus.js.publish(subjects.work(this.runId, queue), encode(WorkItem, item), {
        msgID: item.id,
        headers: h,
      });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (e) {
      throw new BusFailed({
        operation: "publish",
        message: `publish work ${item.id} to ${subjects.work(this.runId, queue)}: ${errorText(e)}`,
      });
    }
  }

  /** Items still waiting or in progress on a queue (WorkQueue retention drops acked ones). */
  async pending(queue: string): Promise<number> {
    const info = await this.bus.jsm.consumers.info(streams.work(this.runId), consumerName(queue));
    return info.num_pending + info.num_ack_pending;
  }

  private async deadLetter(queue: string, d: DeadLetterT): Promise<void> {
    // msgID: the same item dead-lettered by two paths (handler + advisory) is recorded once.
    await this.bus.js.publish(subjects.dlq(this.runId, queue), encode(DeadLetter, d), {
      msgID: `dlq/${queue}/${d.streamSeq}`,
    });
  }

  private record(
    queue: string,
    m: { subject: string; data: Uint8Array; seq: number; deliveries: number; msgId?: string },
    reason: DeadLetterT["reason"],
    error: { _tag?: string; message: string },
  ): DeadLetterT {
    return {
      runId: this.runId,
      queue,
      subject: m.subject,
      reason,
      error: { tag: error._tag ?? "Error", message: error.message },
      deliveries: m.deliveries,
      streamSeq: m.seq,
      ...(m.msgId ? { msgId: m.msgId } : {}),
      time: new Date().toISOString(),
      original: m.data,
    };
  }

  /** Dead-letter records of a queue (or all queues), oldest first. */
  async deadLetters(queue?: string): Promise<DeadLetterT[]> {
    const stream = streams.dlq(this.runId);
    const { first_seq, last_seq } = (await this.bus.jsm.streams.info(stream)).state;
    const out: DeadLetterT[] = [];
    const want = queue === undefined ? undefined : subjects.dlq(this.runId, queue);
    // Dead letters are few; direct gets keep this independent of consumer features.
    for (let seq = Math.max(1, first_seq); seq <= last_seq; seq++) {
      const m = await this.bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (!m || (want && m.subject !== want)) continue;
      const r = decode(DeadLetter, m.data, `${stream}#${seq}`);
      if (Result.isSuccess(r)) out.push(r.success);
    }
    return out;
  }

  /**
   * Runs `handler` for each item of the queue, one at a time, until stop(). Outcomes:
   * resolved → ack; PermanentFailure or an undecodable message → dead letter, then ack;
   * other errors → nak with backoff, dead letter on the last allowed delivery. Items whose
   * worker died on the last delivery reach the dead letters through the server's
   * max-deliveries advisory.
   */
  async consume(queue: string, handler: WorkHandler, o: ConsumeOptions = {}): Promise<Worker> {
    if (!this.options.has(queue)) await this.adoptQueue(queue);
    const { maxDeliver, backoffMs } = this.options.get(queue)!;
    const stream = streams.work(this.runId);
    const consumer = await this.bus.js.consumers.get(stream, consumerName(queue));
    const msgs = await consumer.consume({ max_messages: 1 });
    const advisories = this.bus.nc.subscribe(
      `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumerName(queue)}`,
    );

    const sendToDlq = async (d: DeadLetterT) => {
      await this.deadLetter(queue, d);
      o.onDeadLetter?.(d);
    };

    const handle = async (m: JsMsg) => {
      const source = `${m.subject}#${m.seq}`;
      const base = {
        subject: m.subject,
        data: m.data,
        seq: m.seq,
        deliveries: m.info.deliveryCount,
        msgId: m.headers?.get("Nats-Msg-Id") || undefined,
      };
      const item = decode(WorkItem, m.data, source);
      if (Result.isFailure(item)) {
        const f = item.failure as MalformedMessage | InvalidMessage;
        await sendToDlq(this.record(queue, base, f._tag === "MalformedMessage" ? "malformed" : "invalid", f));
        await m.ackAck(); // the DLQ holds it now; acking removes it from the work-queue stream
        return;
      }
      const beat = o.heartbeatMs ? setInterval(() => m.working(), o.heartbeatMs) : undefined;
      try {
        await handler(item.success, {
          deliveryCount: m.info.deliveryCount,
          streamSeq: m.seq,
          traceparent: m.headers?.get("traceparent") || item.success.traceparent,
          publishedAtMs: Number(m.info.timestampNanos) / 1e6,
          working: () => m.working(),
        });
        await m.ackAck();
      } catch (e) {
        if (isPermanent(e)) {
          const tag = e instanceof PermanentFailure ? e.tag : ((e as { _tag?: string })._tag ?? "Error");
          await sendToDlq(this.record(queue, base, "rejected", { _tag: tag, message: errorText(e) }));
          await m.ackAck();
        } else if (m.info.deliveryCount >= maxDeliver) {
          const err = e as { _tag?: string; message?: string };
          await sendToDlq(
            this.record(queue, base, "exhausted", { _tag: err._tag, message: `${source}: ${errorText(e)}` }),
          );
          await m.ackAck();
        } else {
          o.onRetry?.(item.success, e, m.info.deliveryCount);
          m.nak(backoffMs[Math.min(m.info.deliveryCount - 1, backoffMs.length - 1)]);
        }
      } finally {
        if (beat) clearInterval(beat);
      }
    };

    const loop = (async () => {
      for await (const m of msgs)
        await handle(m).catch(() => {
          // Bus trouble while settling (e.g. the DLQ publish failed): let it be redelivered.
          m.nak(backoffMs[0]);
        });
    })();

    const advisoryLoop = (async () => {
      for await (const a of advisories) {
        try {
          const adv = JSON.parse(new TextDecoder().decode(a.data)) as { stream_seq: number; deliveries: number };
          const sm = await this.bus.jsm.streams.getMessage(stream, { seq: adv.stream_seq });
          if (!sm) continue;
          const d = this.record(
            queue,
            {
              subject: sm.subject,
              data: sm.data,
              seq: adv.stream_seq,
              deliveries: adv.deliveries,
              msgId: sm.header?.get("Nats-Msg-Id") || undefined,
            },
            "exhausted",
            {
              _tag: "MaxDeliveries",
              message: `${sm.subject}#${adv.stream_seq}: not acked after ${adv.deliveries} deliveries`,
            },
          );
          await sendToDlq(d);
          await this.bus.jsm.streams.deleteMessage(stream, adv.stream_seq, false).catch(() => undefined);
        } catch {
          // the message is gone already (another worker handled the same advisory)
        }
      }
    })();

    return {
      stop: async () => {
        msgs.stop();
        advisories.unsubscribe();
        await loop;
        await advisoryLoop;
      },
    };
  }
}
