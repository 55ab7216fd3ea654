import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Bus, NatsConnection, RunWorkQueues } from "@moeq/bus";
import { type DeadLetter, type TensorDescriptor, workId } from "@moeq/contracts";
import { native } from "@moeq/native";
import { Effect, Exit, Layer } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listSegments, RunTensorStore, segmentPrefix, TensorStore } from "../src/index.ts";
import { freshRunId, startTestNats, type TestNats, tempRoot, until } from "./helpers.ts";

let nats: TestNats;
let bus: Bus;
const root = tempRoot("unit");
const outside = tempRoot("outside");
beforeAll(async () => {
  nats = await startTestNats();
  bus = await nats.connect("store-test");
});
afterAll(async () => {
  await bus?.nc.drain();
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const ownStore = async (tag: string) =>
  RunTensorStore.open(bus, { runId: freshRunId(tag), allowedRoots: [root], owner: true });
const segmentsOf = (runId: string) => listSegments().filter((n) => n.startsWith(segmentPrefix(runId)));

describe("put/open round trips", () => {
  it.each([
    ["inline", "u8", [3, 5]],
    ["inline", "bf16", [7]],
    ["shm", "f32", [13, 17]],
    ["shm", "e2m1", [3, 3]],
    ["obj", "f16", [1000, 3]],
    ["obj", "i8", [200_001]],
  ] as const)("%s %s%j", async (prefer, dtype, shape) => {
    const store = await ownStore(`rt-${prefer}`);
    const n = Math.ceil(
      (shape.reduce((a, b) => a * b, 1) * ({ u8: 8, bf16: 16, f32: 32, e2m1: 4, f16: 16, i8: 8 } as const)[dtype]) / 8,
    );
    const data = randomBytes(n);
    const d = await store.put({ dtype, shape, data }, { prefer, checksum: true });
    expect(d.loc.kind).toBe(prefer);
    if (d.loc.kind === "shm") expect(readFileSync(`/dev/shm/${d.loc.segment}`).equals(data)).toBe(true);
    const o = await store.open(d, { verify: true });
    expect(Buffer.from(o.tensor.data).equals(data)).toBe(true);
    expect(d.checksum?.hex).toBe(createHash("sha256").update(data).digest("hex"));
    await o.release();
    await store.endRun();
  });

  it("large tensors asked to go inline fall back to shm", async () => {
    const store = await ownStore("inline-big");
    const d = await store.put({ dtype: "u8", shape: [65_537], data: new Uint8Array(65_537) }, { prefer: "inline" });
    expect(d.loc.kind).toBe("shm");
    await store.endRun();
  });

  it("file descriptors map a byte range of a file under the allowed roots", async () => {
    const store = await ownStore("file");
    const bytes = randomBytes(4096 * 3 + 50);
    const f = join(root, "shard.safetensors");
    writeFileSync(f, bytes);
    const d = store.describeFile(f, 4097, "bf16", [2, 11]);
    const o = await store.open(d);
    expect(Buffer.from(o.tensor.data).equals(bytes.subarray(4097, 4097 + 44))).toBe(true);
    await store.endRun();
  });
});

describe("leases", () => {
  it("a segment lives until every consumer released it; releases are idempotent", async () => {
    const store = await ownStore("lease");
    const d = await store.put({ dtype: "u8", shape: [100], data: new Uint8Array(100).fill(9) }, { consumers: 2 });
    const seg = d.loc.kind === "shm" ? d.loc.segment : "";
    const a = await store.open(d);
    const b = await store.open(d);
    await a.release();
    await a.release();
    expect(existsSync(`/dev/shm/${seg}`)).toBe(true);
    expect(b.tensor.data[99]).toBe(9);
    await b.release();
    expect(existsSync(`/dev/shm/${seg}`)).toBe(false);
    expect(b.tensor.data[0]).toBe(0); // a released view reads zeros, never a fault
    await store.endRun();
  });

  it("obj: the last release deletes the object", async () => {
    const store = await ownStore("objlease");
    const d = await store.put(
      { dtype: "u8", shape: [10], data: new Uint8Array(10).fill(1) },
      { prefer: "obj", consumers: 1 },
    );
    await (await store.open(d)).release();
    await expect(store.open(d)).rejects.toMatchObject({ _tag: "DescriptorRejected", reason: "missing" });
    await store.endRun();
  });

  it("no segment survives endRun, released or not", async () => {
    const store = await ownStore("end");
    for (let i = 0; i < 4; i++)
      await store.put({ dtype: "f32", shape: [i + 1], data: new Uint8Array(4 * (i + 1)) }, { consumers: 3 });
    expect(segmentsOf(store.runId).length).toBe(4);
    expect(existsSync(`/dev/shm/moeq-${store.runId}.run`)).toBe(true);
    await store.endRun();
    expect(segmentsOf(store.runId)).toEqual([]);
    expect(existsSync(`/dev/shm/moeq-${store.runId}.run`)).toBe(false);
  });
});

describe("rejections", () => {
  const expectRejected = async (store: RunTensorStore, d: TensorDescriptor, reason: string, text: RegExp) => {
    const err = await store.open(d).then(
      () => undefined,
      (e) => e,
    );
    expect(err?._tag).toBe("DescriptorRejected");
    expect(err?.reason).toBe(reason);
    expect(err?.message).toMatch(text);
  };

  it("file paths outside the allowed roots, through .. or a symlink, are rejected", async () => {
    const store = await ownStore("roots");
    const secret = join(outside, "secret.bin");
    writeFileSync(secret, randomBytes(64));
    mkdirSync(join(root, "sub"), { recursive: true });
    const link = join(root, "sub", "link.bin");
    if (!existsSync(link)) symlinkSync(secret, link);
    const d = (path: string): TensorDescriptor => ({
      dtype: "u8",
      shape: [8],
      loc: { kind: "file", path, offset: 0, bytes: 8 },
    });
    await expectRejected(store, d(secret), "outside-roots", /secret\.bin.*outside the run's allowed roots/);
    await expectRejected(
      store,
      d(join(root, "..", outside.split("/").pop()!, "secret.bin")),
      "outside-roots",
      /outside/,
    );
    await expectRejected(store, d(link), "outside-roots", /link\.bin/);
    await expectRejected(store, d("/etc/passwd"), "outside-roots", /\/etc\/passwd/);
    await expectRejected(store, d(join(root, "nope.bin")), "missing", /nope\.bin/);
    await store.endRun();
  });

  it("ranges past the end of a file or segment are rejected", async () => {
    const store = await ownStore("pastend");
    const f = join(root, "small.bin");
    writeFileSync(f, randomBytes(100));
    await expectRejected(
      store,
      { dtype: "u8", shape: [10], loc: { kind: "file", path: f, offset: 95, bytes: 10 } },
      "past-end",
      /small\.bin/,
    );
    const good = await store.put({ dtype: "u8", shape: [64], data: new Uint8Array(64) }, { consumers: 0 });
    if (good.loc.kind !== "shm") throw new Error("expected shm");
    const forged = { ...good, loc: { ...good.loc, offset: 32 } };
    await expectRejected(store, forged, "past-end", new RegExp(`past the end of segment ${good.loc.segment}`));
    await store.endRun();
  });

  it("wrong sizes, foreign segments, missing segments and bad checksums are rejected", async () => {
    const store = await ownStore("sizes");
    const good = await store.put(
      { dtype: "f32", shape: [4], data: new Uint8Array(16) },
      { consumers: 0, checksum: true },
    );
    if (good.loc.kind !== "shm") throw new Error("expected shm");
    await expectRejected(store, { ...good, shape: [5] }, "wrong-size", /16 bytes, f32\[5\] needs 20/);
    await expectRejected(
      store,
      { ...good, loc: { ...good.loc, segment: "moeq-otherrun-1.1" } },
      "foreign-segment",
      /otherrun/,
    );
    await expectRejected(
      store,
      { ...good, loc: { ...good.loc, segment: `${segmentPrefix(store.runId)}999.999` } },
      "missing",
      /999\.999/,
    );
    await expect(store.put({ dtype: "f32", shape: [4], data: new Uint8Array(15) })).rejects.toMatchObject({
      reason: "wrong-size",
    });
    const tampered = { ...good, checksum: { algo: "sha256" as const, hex: "0".repeat(64) } };
    await expect(store.open(tampered, { verify: true })).rejects.toMatchObject({ _tag: "ChecksumMismatch" });
    await expectRejected(
      store,
      { dtype: "u8", shape: [4], loc: { kind: "cuda", device: 0, handle: new Uint8Array(64), offset: 0, bytes: 4 } },
      "unsupported",
      /cuda/,
    );
    await store.endRun();
  });

  it("a work-queue stage dead-letters bad descriptors with a typed record and keeps running", async () => {
    const store = await ownStore("stage");
    const runId = store.runId;
    const queues = await RunWorkQueues.open(bus, runId);
    await queues.ensureQueue("quantize", { ackWaitMs: 2000, maxDeliver: 2 });
    const good = await store.put({ dtype: "u8", shape: [8], data: new Uint8Array(8).fill(7) }, { consumers: 1 });
    const sums: number[] = [];
    const dead: DeadLetter[] = [];
    const worker = await queues.consume(
      "quantize",
      async (w) => {
        const o = await store.open(w.payload.weight as TensorDescriptor, { source: w.id });
        sums.push(o.tensor.data.reduce((a, b) => a + b, 0));
        await o.release();
      },
      { onDeadLetter: (d) => dead.push(d) },
    );
    const items: Array<[number, TensorDescriptor]> = [
      [0, { dtype: "u8", shape: [8], loc: { kind: "file", path: "/etc/passwd", offset: 0, bytes: 8 } }],
      [1, { ...good, shape: [9] }],
      [2, good.loc.kind === "shm" ? { ...good, loc: { ...good.loc, offset: 4 } } : good],
      [3, good],
    ];
    for (const [expert, weight] of items)
      await queues.publish("quantize", {
        id: workId({ runId, stage: "quantizer", layer: 0, expert, proj: "w" }),
        runId,
        kind: "quantize-expert",
        payload: { weight },
      });
    await until(() => sums.length === 1 && dead.length === 3);
    await worker.stop();
    expect(sums).toEqual([56]);
    const records = await queues.deadLetters("quantize");
    expect(records.map((r) => [r.reason, r.error.tag])).toEqual([
      ["rejected", "DescriptorRejected"],
      ["rejected", "DescriptorRejected"],
      ["rejected", "DescriptorRejected"],
    ]);
    expect(records[0].error.message).toMatch(/r?\/0\/.*\/etc\/passwd.*outside/);
    expect(records[1].error.message).toMatch(/u8\[9\] needs 9/);
    expect(records[2].error.message).toMatch(/past the end of segment/);
    await store.endRun();
  });
});

describe("Effect layer", () => {
  it("TensorStore.layer (owner) removes the run's segments when its scope closes", async () => {
    const runId = freshRunId("layer");
    const layer = TensorStore.layer({ runId, allowedRoots: [root], owner: true }).pipe(
      Layer.provide(NatsConnection.layer({ url: nats.url, token: nats.token, user: nats.user, pass: nats.pass })),
    );
    const exit = await Effect.runPromiseExit(
      Effect.gen(function* () {
        const store = yield* TensorStore;
        const d = yield* store.put({ dtype: "u8", shape: [3], data: new Uint8Array([1, 2, 3]) }, { consumers: 5 });
        const o = yield* store.open(d);
        const bad = yield* Effect.flip(store.open({ ...d, shape: [4] }));
        return { head: [...o.tensor.data], bad: bad._tag, during: segmentsOf(runId).length };
      }).pipe(Effect.provide(layer)),
    );
    expect(Exit.isSuccess(exit) && exit.value).toEqual({ head: [1, 2, 3], bad: "DescriptorRejected", during: 1 });
    expect(segmentsOf(runId)).toEqual([]);
    expect(native.shmUnlink(`moeq-${runId}.run`)).toBe(false);
  });
});
