// cuda descriptors. CI (CPU build): typed errors for every cuda route, schema round trip of the
// descriptor with its event handle. CUDA build (GPU machine): the two-process handoff with leases.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Bus, LeaseTable } from "@moeq/bus";
import { packValue, TensorDescriptor, unpackValue, validate } from "@moeq/contracts";
import { CudaUnavailable, native } from "@moeq/native";
import { Result } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CudaTensorStore, cudaLeaseKey, DescriptorRejected } from "../src/index.ts";
import { cudaHandoff } from "./cuda-scenario.ts";
import { freshRunId, natsArg, spawnNode, startTestNats, type TestNats } from "./helpers.ts";

let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startTestNats();
  bus = await nats.connect("store-cuda");
});
afterAll(async () => {
  await bus?.nc.drain();
  await nats?.stop();
});

const handle = Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 255);
const desc = (bytes: number, shape: number[]): TensorDescriptor => ({
  dtype: "f32",
  shape,
  loc: { kind: "cuda", device: 0, handle, offset: 256, bytes, event: new Uint8Array(64).fill(7) },
});

describe("cuda descriptors: contract", () => {
  it("round-trip through msgpack and the schema, event handle included", () => {
    const d = desc(64, [4, 4]);
    const back = Result.getOrThrow(validate(TensorDescriptor, Result.getOrThrow(unpackValue(packValue(d), "t")), "t"));
    expect(back).toEqual(d);
  });

  it("lease keys are per (allocation, offset) and the same in every process", () => {
    expect(cudaLeaseKey(handle, 256)).toBe(cudaLeaseKey(Uint8Array.from(handle), 256));
    expect(cudaLeaseKey(handle, 256)).not.toBe(cudaLeaseKey(handle, 512));
    expect(cudaLeaseKey(handle, 0)).toMatch(/^cuda\.[0-9a-f]{32}\.0$/);
  });

  it("a wrong byte count is rejected before any device access", async () => {
    const store = await CudaTensorStore.open(bus, freshRunId("cuda"));
    await expect(store.open(desc(60, [4, 4]), { source: "L3.E7 hessian" })).rejects.toMatchObject({
      _tag: "DescriptorRejected",
      reason: "wrong-size",
      message: expect.stringMatching(/^L3\.E7 hessian: location holds 60 bytes, f32\[4,4\] needs 64/),
    });
    await store.close();
  });
});

describe("cuda descriptors: releasing without mapping", () => {
  it("releaseUnopened drops one holder; the last one deletes the lease and tells the producer", async () => {
    const runId = freshRunId("cuda");
    const store = await CudaTensorStore.open(bus, runId);
    const leases = await LeaseTable.open(bus, runId);
    const d = desc(64, [16]);
    const key = cudaLeaseKey(handle, 256);
    await leases.grant(key, 64, 2);
    const freed: string[] = [];
    const sub = bus.nc.subscribe(`moeq.${runId}.store.cuda-free`, {
      callback: (_e, m) => freed.push(new TextDecoder().decode(m.data)),
    });
    await store.releaseUnopened(d);
    expect((await leases.get(key))?.holders).toBe(1);
    await store.releaseUnopened(d);
    expect(await leases.get(key)).toBeUndefined();
    await bus.nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    expect(freed).toContain(key);
    // a file descriptor has no lease: nothing happens
    await store.releaseUnopened({ dtype: "f32", shape: [0], loc: { kind: "inline", data: new Uint8Array(0) } });
    sub.unsubscribe();
    await store.close();
  });
});

if (!native.withCuda) {
  describe("CPU build (CI)", () => {
    it("put fails with CudaUnavailable, open with DescriptorRejected(unsupported)", async () => {
      const store = await CudaTensorStore.open(bus, freshRunId("cuda"));
      expect(store.available).toBe(false);
      await expect(store.put("f32", [4], { bytes: 16, device: 0 })).rejects.toBeInstanceOf(CudaUnavailable);
      await expect(store.put("f32", [4], { bytes: 16, device: 0 })).rejects.toThrow(/CPU-only build/);
      const err = await store.open(desc(64, [16])).catch((e) => e);
      expect(err).toBeInstanceOf(DescriptorRejected);
      expect(err).toMatchObject({ reason: "unsupported", permanent: true });
      expect(err.message).toMatch(/need the CUDA build/);
      await store.close();
    });
  });
} else {
  describe("CUDA build: two processes", () => {
    it("hand a device tensor to two consumers; the producer frees after the last release", async () => {
      const runId = freshRunId("cuda");
      const script = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures", "cuda-consumer.ts");
      const summary = await cudaHandoff(bus, runId, async () => {
        const c = spawnNode(script, [natsArg(nats), runId]);
        const ready = await c.waitFor((l) => "ready" in l, 20_000);
        return { pid: ready.ready as number, stop: () => c.proc.kill() };
      });
      console.log(summary);
    }, 60_000);
  });
}
