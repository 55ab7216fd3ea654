import { childTraceparent, type Event, foldRunState, initialRunState, type NewEvent } from "@moeq/contracts";
import { Effect, Exit, Layer } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, EventLog, NatsConnection, RunEventLog, streams } from "../src/index.ts";
import { freshRunId, startTestNats, type TestNats } from "./nats-fixture.ts";

let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startTestNats();
  bus = await nats.connect("event-log-test");
});
afterAll(async () => {
  await bus?.nc.drain();
  await nats?.stop();
});

const quantized = (layer: number, expert: number): NewEvent => ({
  type: "ExpertQuantized",
  payload: { layer, expert, proj: "down_proj", outputs: {}, loss: 0.25, algorithm: "gptq", seconds: 0.5 },
});

describe("event log", () => {
  it("append with an expected last sequence: success, AppendConflict when stale", async () => {
    const log = await RunEventLog.open(bus, freshRunId("occ"));
    const a = await log.append("run", { type: "RunCompleted", payload: { seconds: 1 } }, { expectedLastSeq: 0 });
    expect(a).toEqual({ seq: 1, duplicate: false });
    await expect(
      log.append("run", { type: "RunCompleted", payload: { seconds: 2 } }, { expectedLastSeq: 0 }),
    ).rejects.toMatchObject({
      _tag: "AppendConflict",
      expected: 0,
    });
    expect(await log.lastSeq()).toBe(1);
  });

  it("a repeated msgId is deduplicated and reports the original sequence", async () => {
    const log = await RunEventLog.open(bus, freshRunId("dedupe"));
    const first = await log.append("quantizer", quantized(0, 1), { msgId: "r/0/1/down_proj/quantizer" });
    await log.append("quantizer", quantized(0, 2));
    const again = await log.append("quantizer", quantized(0, 1), { msgId: "r/0/1/down_proj/quantizer" });
    expect(again).toEqual({ seq: first.seq, duplicate: true });
    expect((await log.read()).length).toBe(2);
  });

  it("concurrent writers without expectations get gap-free sequences equal to the envelopes' seq", async () => {
    const runId = freshRunId("race");
    const buses = await Promise.all([nats.connect("w1"), nats.connect("w2"), nats.connect("w3")]);
    const logs = await Promise.all(buses.map((b) => RunEventLog.open(b, runId)));
    await Promise.all(
      logs.map((l, w) => Promise.all(Array.from({ length: 8 }, (_, i) => l.append(`s${w}`, quantized(w, i))))),
    );
    const events = await logs[0].read();
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    await Promise.all(buses.map((b) => b.nc.drain()));
  });

  it("replaying the stream rebuilds the same state as the live fold", async () => {
    const runId = freshRunId("replay");
    const log = await RunEventLog.open(bus, runId);
    let live = initialRunState;
    const seen: Event[] = [];
    const follower = await log.follow(1, (e) => {
      seen.push(e);
      live = foldRunState(live, e);
    });
    const tp = childTraceparent();
    const script: NewEvent[] = [
      {
        type: "RunStarted",
        payload: { modelDir: "/models/m", options: { bits: 4 }, graph: { version: 1, stages: [{ name: "loader" }] } },
      },
      { type: "StageStarted", payload: { stage: "loader", instance: "a", host: "h", pid: 1 } },
      {
        type: "ModelOpened",
        payload: {
          arch: "qwen3_moe",
          layers: 2,
          expertsPerLayer: [4, 4],
          topK: 2,
          hiddenSize: 64,
          dtype: "bf16",
          config: {},
        },
      },
      { type: "LayerLoaded", payload: { layer: 0, tensors: {} } },
      quantized(0, 3),
      quantized(0, 1),
      quantized(0, 3),
      { type: "LayerCompleted", payload: { layer: 0, experts: 4, seconds: 2 } },
      { type: "ShardWritten", payload: { file: "model-00001.safetensors", bytes: 10, sha256: "a".repeat(64) } },
      { type: "RunCompleted", payload: { seconds: 9 } },
    ];
    for (const e of script) await log.append(e.type === "StageStarted" ? "loader" : "run", e, { traceparent: tp });
    for (let i = 0; i < 100 && seen.length < script.length; i++) await new Promise((r) => setTimeout(r, 20));
    await follower.stop();
    const replayed = await (await RunEventLog.open(await nats.connect("replayer"), runId)).fold(
      foldRunState,
      initialRunState,
    );
    expect(replayed).toEqual(live);
    expect(replayed.status).toBe("completed");
    expect(replayed.quantized).toEqual(["0/1/down_proj", "0/3/down_proj"]);
    expect(replayed.lastSeq).toBe(script.length);
    expect(seen.every((e) => e.traceparent === tp)).toBe(true);
    // The trace context also rides in the message headers.
    const raw = await bus.jsm.streams.getMessage(streams.events(runId), { seq: 1 });
    expect(raw?.header.get("traceparent")).toBe(tp);
  });

  it("Effect layer: append + fold through the EventLog service", async () => {
    const runId = freshRunId("effect");
    const layer = EventLog.layer(runId).pipe(
      Layer.provideMerge(NatsConnection.layer({ url: nats.url, token: nats.token, user: nats.user, pass: nats.pass })),
    );
    const exit = await Effect.runPromiseExit(
      Effect.gen(function* () {
        const log = yield* EventLog;
        yield* log.append("run", {
          type: "RunFailed",
          payload: { stage: "packer", error: { tag: "Boom", message: "disk full" } },
        });
        const conflict = yield* Effect.flip(
          log.append("run", { type: "RunCompleted", payload: { seconds: 1 } }, { expectedLastSeq: 0 }),
        );
        const state = yield* log.fold(foldRunState, initialRunState);
        return { conflict: conflict._tag, state };
      }).pipe(Effect.provide(layer)),
    );
    expect(Exit.isSuccess(exit)).toBe(true);
    if (Exit.isSuccess(exit)) {
      expect(exit.value.conflict).toBe("AppendConflict");
      expect(exit.value.state.status).toBe("failed");
      expect(exit.value.state.error).toBe("packer: disk full");
    }
  });

  it("refuses schema-invalid events before they reach the stream", async () => {
    const log = await RunEventLog.open(bus, freshRunId("invalid"));
    await expect(log.append("run", { type: "LayerLoaded", payload: { layer: -2, tensors: {} } })).rejects.toThrow(
      /layer/,
    );
    expect(await log.lastSeq()).toBe(0);
  });
});
