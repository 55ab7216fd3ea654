import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { childTraceparent, type DeadLetter, decode, packValue, WorkItem, workId } from "@moeq/contracts";
import { Effect, Exit, Layer, Result } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  consumerName,
  NatsConnection,
  PermanentFailure,
  RunEventLog,
  RunWorkQueues,
  streams,
  subjects,
  WorkQueue,
} from "../src/index.ts";
import { spawnNode } from "./child.ts";
import { freshRunId, natsArg, startTestNats, type TestNats } from "./nats-fixture.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startTestNats();
  bus = await nats.connect("work-queue-test");
});
afterAll(async () => {
  await bus?.nc.drain();
  await nats?.stop();
});

const item = (runId: string, expert: number, extra: Partial<WorkItem> = {}): WorkItem => ({
  id: workId({ runId, stage: "quantizer", layer: 0, expert, proj: "up_proj" }),
  runId,
  kind: "quantize-expert",
  payload: { layer: 0, expert, proj: "up_proj" },
  ...extra,
});

const until = async (cond: () => boolean | Promise<boolean>, timeoutMs = 15_000) => {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
};

describe("work queues", () => {
  it("a consumer SIGKILLed mid-work: the item is redelivered to another consumer and completed once", async () => {
    const runId = freshRunId("kill");
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("quantize", { ackWaitMs: 1000, maxDeliver: 4 });
    const tp = childTraceparent();
    const hanging = spawnNode(join(fixtures, "worker.ts"), [natsArg(nats), runId, "quantize", "hang"]);
    await hanging.waitFor((l) => "ready" in l);
    const w = item(runId, 7);
    expect((await queues.publish("quantize", w, { traceparent: tp })).duplicate).toBe(false);
    expect((await queues.publish("quantize", w, { traceparent: tp })).duplicate).toBe(true);
    const got = await hanging.waitFor((l) => l.got === w.id);
    expect(got.traceparent).toBe(tp);
    await hanging.kill("SIGKILL");

    const worker = spawnNode(join(fixtures, "worker.ts"), [natsArg(nats), runId, "quantize", "work"]);
    try {
      const redelivered = await worker.waitFor((l) => l.got === w.id);
      expect(redelivered.delivery).toBe(2);
      await worker.waitFor((l) => l.done === w.id);
      const log = await RunEventLog.open(bus, runId);
      await until(async () => (await queues.pending("quantize")) === 0);
      await new Promise((r) => setTimeout(r, 1500)); // longer than ack wait: no third delivery
      const events = await log.read();
      expect(events.filter((e) => e.type === "ExpertQuantized").length).toBe(1);
      expect(events[0].traceparent).toBe(tp);
      expect(worker.lines.filter((l) => l.got === w.id).length).toBe(1);
    } finally {
      await worker.kill();
    }
  }, 30_000);

  it("redeliverInFlight: an item held by a SIGKILLed worker comes back at once, not after the 120 s ack wait", async () => {
    const runId = freshRunId("redeliver");
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("quantize", { ackWaitMs: 120_000, maxDeliver: 4 });
    const hanging = spawnNode(join(fixtures, "worker.ts"), [natsArg(nats), runId, "quantize", "hang"]);
    await hanging.waitFor((l) => "ready" in l);
    const held = item(runId, 3);
    const queued = item(runId, 4);
    await queues.publish("quantize", held);
    await hanging.waitFor((l) => l.got === held.id);
    await hanging.kill("SIGKILL");
    await queues.publish("quantize", queued);
    expect(await queues.redeliverInFlight()).toBe(1);
    // the queue keeps its settings
    const info = await bus.jsm.consumers.info(streams.work(runId), consumerName("quantize"));
    expect(info.config.ack_wait).toBe(120_000 * 1_000_000);
    expect(info.config.max_deliver).toBe(4);
    const started = Date.now();
    const worker = spawnNode(join(fixtures, "worker.ts"), [natsArg(nats), runId, "quantize", "work"]);
    try {
      await worker.waitFor((l) => l.done === held.id);
      await worker.waitFor((l) => l.done === queued.id);
      expect(Date.now() - started).toBeLessThan(10_000);
      await until(async () => (await queues.pending("quantize")) === 0);
      expect(await queues.redeliverInFlight()).toBe(0);
    } finally {
      await worker.kill();
    }
  }, 30_000);

  it("malformed msgpack, schema-invalid items and permanent failures are dead-lettered; the worker keeps running", async () => {
    const runId = freshRunId("dlq");
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("quantize", { ackWaitMs: 2000, maxDeliver: 3, backoffMs: [10] });
    const done: string[] = [];
    const dead: DeadLetter[] = [];
    const worker = await queues.consume(
      "quantize",
      async (w) => {
        if (w.payload.expert === 13)
          throw new PermanentFailure({
            tag: "DescriptorOutsideRoots",
            message: `${w.id}: /etc/passwd is outside the run's roots`,
          });
        if (w.payload.expert === 66) throw new Error("transient failure that never heals");
        done.push(w.id);
      },
      { onDeadLetter: (d) => dead.push(d) },
    );
    const subject = subjects.work(runId, "quantize");
    await bus.js.publish(subject, new Uint8Array([0xc1, 0x00]), { msgID: "junk-1" });
    await bus.js.publish(subject, packValue({ id: "x", runId, kind: 3, payload: {} }), { msgID: "junk-2" });
    await queues.publish("quantize", item(runId, 13));
    await queues.publish("quantize", item(runId, 66));
    await queues.publish("quantize", item(runId, 1));
    await until(() => done.length === 1 && dead.length === 4);
    await worker.stop();
    expect(done).toEqual([item(runId, 1).id]);
    const records = await queues.deadLetters("quantize");
    expect(records.map((d) => d.reason).sort()).toEqual(["exhausted", "invalid", "malformed", "rejected"]);
    const byReason = Object.fromEntries(records.map((d) => [d.reason, d]));
    expect(byReason.malformed.error.tag).toBe("MalformedMessage");
    expect([...byReason.malformed.original]).toEqual([0xc1, 0x00]);
    expect(byReason.invalid.error.message).toContain("kind");
    expect(byReason.rejected.error.tag).toBe("DescriptorOutsideRoots");
    expect(byReason.exhausted.deliveries).toBe(3);
    const original = decode(WorkItem, byReason.rejected.original, "dlq");
    expect(Result.isSuccess(original) && original.success.id).toBe(item(runId, 13).id);
    expect(await queues.pending("quantize")).toBe(0);
  }, 30_000);

  it("working() heartbeats keep a long item from being redelivered", async () => {
    const runId = freshRunId("beat");
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("calibrate", { ackWaitMs: 500, maxDeliver: 5 });
    const deliveries: number[] = [];
    const worker = await queues.consume("calibrate", async (_w, ctx) => {
      deliveries.push(ctx.deliveryCount);
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 200)); // 1.6 s of "kernel", > 3 ack waits
        ctx.working();
      }
    });
    await queues.publish("calibrate", item(runId, 2));
    await until(async () => deliveries.length === 1 && (await queues.pending("calibrate")) === 0, 10_000);
    await worker.stop();
    expect(deliveries).toEqual([1]);
  }, 20_000);

  it("an item whose workers all die reaches the dead letters after max deliveries (advisory path)", async () => {
    const runId = freshRunId("maxdeliv");
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("quantize", { ackWaitMs: 300, maxDeliver: 2 });
    const dead: DeadLetter[] = [];
    // Handlers that never settle stand in for workers that die before they can ack: each
    // takes one delivery, so two of them use up max_deliver = 2.
    const taken: number[] = [];
    const hung = (_w: WorkItem, ctx: { deliveryCount: number }) => {
      taken.push(ctx.deliveryCount);
      return new Promise<void>(() => {});
    };
    const workers = [
      await queues.consume("quantize", hung, { onDeadLetter: (d) => dead.push(d) }),
      await queues.consume("quantize", hung, { onDeadLetter: (d) => dead.push(d) }),
    ];
    await queues.publish("quantize", item(runId, 4));
    await until(() => taken.length === 2, 10_000);
    expect(taken).toEqual([1, 2]);
    // The server checks max deliveries when it next has somewhere to deliver: a healthy worker.
    const healthy: string[] = [];
    workers.push(
      await queues.consume("quantize", async (w) => void healthy.push(w.id), { onDeadLetter: (d) => dead.push(d) }),
    );
    await until(() => dead.length >= 1, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(healthy).toEqual([]);
    expect(dead.length).toBe(3); // every worker saw the advisory ...
    expect((await queues.deadLetters("quantize")).length).toBe(1); // ... and the record exists once
    expect(dead[0].reason).toBe("exhausted");
    expect(dead[0].error.tag).toBe("MaxDeliveries");
    await until(async () => (await queues.pending("quantize")) === 0, 5000);
    for (const w of workers) void w.stop();
  }, 20_000);

  it("Effect layer: consume in a scope, fail with PermanentFailure to dead-letter", async () => {
    const runId = freshRunId("effect");
    const layer = WorkQueue.layer(runId).pipe(
      Layer.provideMerge(NatsConnection.layer({ url: nats.url, token: nats.token, user: nats.user, pass: nats.pass })),
    );
    const seen: string[] = [];
    const exit = await Effect.runPromiseExit(
      Effect.scoped(
        Effect.gen(function* () {
          const wq = yield* WorkQueue;
          yield* wq.ensureQueue("pack", { ackWaitMs: 2000 });
          yield* wq.consume("pack", (w) =>
            w.payload.expert === 0
              ? Effect.fail(new PermanentFailure({ tag: "WrongSize", message: `${w.id}: 10 bytes, expected 12` }))
              : Effect.sync(() => void seen.push(w.id)),
          );
          yield* wq.publish("pack", item(runId, 0));
          yield* wq.publish("pack", item(runId, 5));
          for (let i = 0; i < 200; i++) {
            const dl = yield* wq.deadLetters("pack");
            if (dl.length === 1 && seen.length === 1) return dl;
            yield* Effect.sleep("25 millis");
          }
          return yield* Effect.die("timeout");
        }),
      ).pipe(Effect.provide(layer)),
    );
    expect(Exit.isSuccess(exit)).toBe(true);
    if (Exit.isSuccess(exit)) {
      expect(exit.value[0].reason).toBe("rejected");
      expect(exit.value[0].error.tag).toBe("WrongSize");
    }
    expect(seen).toEqual([item(runId, 5).id]);
  }, 20_000);
});
