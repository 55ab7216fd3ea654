// Effect faces of the event log and work queues (the plain classes serve child processes and
// non-Effect code; both talk to the same streams).
import type { DeadLetter, Event, InvalidMessage, MalformedMessage, NewEvent, WorkItem } from "@moeq/contracts";
import { Cause, Context, Effect, Exit, Layer, type Scope } from "effect";
import { NatsConnection } from "./connection.ts";
import { type AppendConflict, BusFailed, errorText } from "./errors.ts";
import { type Appended, type AppendOptions, RunEventLog } from "./event-log.ts";
import { type ConsumeOptions, type QueueOptions, RunWorkQueues, type WorkContext } from "./work-queue.ts";

type ReadError = BusFailed | MalformedMessage | InvalidMessage;

const tagged = (operation: string) => (e: unknown) => {
  const t = (e as { _tag?: string })?._tag;
  if (t === "AppendConflict" || t === "BusFailed" || t === "MalformedMessage" || t === "InvalidMessage")
    return e as never;
  return new BusFailed({ operation, message: `${operation}: ${errorText(e)}` });
};

const attempt = <A, E>(operation: string, f: () => Promise<A>): Effect.Effect<A, E> =>
  Effect.tryPromise({ try: f, catch: tagged(operation) as (e: unknown) => E });

export interface EventLogShape {
  readonly runId: string;
  readonly client: RunEventLog;
  append(stage: string, event: NewEvent, o?: AppendOptions): Effect.Effect<Appended, AppendConflict | BusFailed>;
  readonly lastSeq: Effect.Effect<number, BusFailed>;
  read(fromSeq?: number): Effect.Effect<Event[], ReadError>;
  fold<S>(reduce: (s: S, e: Event) => S, initial: S): Effect.Effect<S, ReadError>;
}

export class EventLog extends Context.Service<EventLog, EventLogShape>()("@moeq/bus/EventLog") {
  static layer(runId: string) {
    return Layer.effect(
      EventLog,
      Effect.gen(function* () {
        const bus = yield* NatsConnection;
        const client = yield* attempt<RunEventLog, BusFailed>("open event log", () => RunEventLog.open(bus, runId));
        return {
          runId,
          client,
          append: (stage, event, o) => attempt("append", () => client.append(stage, event, o)),
          lastSeq: attempt("lastSeq", () => client.lastSeq()),
          read: (fromSeq) => attempt("read", () => client.read(fromSeq)),
          fold: (reduce, initial) => attempt("fold", () => client.fold(reduce, initial)),
        } satisfies EventLogShape;
      }),
    );
  }
}

export interface WorkQueueShape {
  readonly runId: string;
  readonly client: RunWorkQueues;
  ensureQueue(queue: string, o?: QueueOptions): Effect.Effect<void, BusFailed>;
  publish(
    queue: string,
    item: WorkItem,
    o?: { traceparent?: string },
  ): Effect.Effect<{ seq: number; duplicate: boolean }, BusFailed>;
  /** Consumes until the surrounding scope closes. Fail with PermanentFailure to dead-letter at once. */
  consume<E>(
    queue: string,
    handler: (item: WorkItem, ctx: WorkContext) => Effect.Effect<void, E>,
    o?: ConsumeOptions,
  ): Effect.Effect<void, BusFailed, Scope.Scope>;
  deadLetters(queue?: string): Effect.Effect<DeadLetter[], BusFailed>;
  pending(queue: string): Effect.Effect<number, BusFailed>;
}

export class WorkQueue extends Context.Service<WorkQueue, WorkQueueShape>()("@moeq/bus/WorkQueue") {
  static layer(runId: string) {
    return Layer.effect(
      WorkQueue,
      Effect.gen(function* () {
        const bus = yield* NatsConnection;
        const client = yield* attempt<RunWorkQueues, BusFailed>("open work queues", () =>
          RunWorkQueues.open(bus, runId),
        );
        return {
          runId,
          client,
          ensureQueue: (queue, o) => attempt("ensureQueue", () => client.ensureQueue(queue, o)),
          publish: (queue, item, o) => attempt("publish", () => client.publish(queue, item, o)),
          consume: (queue, handler, o) =>
            Effect.acquireRelease(
              attempt<{ stop(): Promise<void> }, BusFailed>("consume", () =>
                client.consume(
                  queue,
                  async (item, ctx) => {
                    const exit = await Effect.runPromiseExit(handler(item, ctx));
                    if (Exit.isFailure(exit)) throw Cause.squash(exit.cause);
                  },
                  o,
                ),
              ),
              (w) => Effect.promise(() => w.stop()),
            ).pipe(Effect.asVoid),
          deadLetters: (queue) => attempt("deadLetters", () => client.deadLetters(queue)),
          pending: (queue) => attempt("pending", () => client.pending(queue)),
        } satisfies WorkQueueShape;
      }),
    );
  }
}
