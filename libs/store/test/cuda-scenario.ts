// The two-process CUDA IPC handoff through the store, shared by cuda.test.ts (CUDA builds) and the
// GPU machine's runner (native/bench/gpu/store-handoff.ts, bundled: no node_modules there).
// A producer puts a device tensor leased to two consumer processes; each maps it, checks the
// values, releases; the producer frees only after the second release. Throws on any deviation.
import type { Bus } from "@moeq/bus";
import { packValue, type TensorDescriptor, unpackValue } from "@moeq/contracts";
import { cudaKernels } from "@moeq/native";
import { Result } from "effect";
import { CudaTensorStore } from "../src/cuda.ts";

interface Consumer {
  pid: number;
  stop(): void;
}

export async function cudaHandoff(bus: Bus, runId: string, startConsumer: () => Promise<Consumer>): Promise<string> {
  const cu = cudaKernels(0);
  const store = await CudaTensorStore.open(bus, runId);
  const consumers = [await startConsumer(), await startConsumer()];
  const ask = async (c: Consumer, descriptor: TensorDescriptor, release: boolean) => {
    const subject = `moeq.${runId}.test.cuda.${c.pid}`;
    const reply = await bus.nc.request(subject, packValue({ descriptor, release }), { timeout: 20_000 });
    return Result.getOrThrow(unpackValue(reply.data, subject)) as Record<string, unknown>;
  };
  const check = (ok: boolean, msg: string) => {
    if (!ok) throw new Error(msg);
  };
  try {
    const n = (8 << 20) + 3; // odd element count, 32 MiB
    const before = cu.cudaDeviceInfo(0).allocatedBytes;
    const buf = cu.cudaAlloc(n * 4);
    cu.cudaFillUniform(buf, n, 77, -1, 1);
    const host = new Float32Array(n);
    cu.cudaDownload(buf, host);
    let sum = 0;
    for (const v of host) sum += v;
    const d = await store.put("f32", [n], buf, { consumers: 2 });
    cu.cudaFree(buf); // the store holds the allocation for its consumers
    check(d.loc.kind === "cuda" && d.loc.event?.byteLength === 64, "descriptor carries no IPC event");
    const t0 = performance.now();
    const r1 = await ask(consumers[0], d, true);
    const handoffMs = performance.now() - t0;
    check(
      r1.ok === true && Math.abs((r1.sum as number) - sum) <= 1e-6 * Math.abs(sum) + 1e-2,
      `consumer 1: ${JSON.stringify(r1)} vs sum ${sum}`,
    );
    check(
      store.exportedCount === 1 && cu.cudaDeviceInfo(0).allocatedBytes - before >= n * 4,
      "freed after the first of two releases",
    );
    const r2 = await ask(consumers[1], d, true);
    check(r2.ok === true && r2.sum === r1.sum, `consumer 2: ${JSON.stringify(r2)}`);
    const end = Date.now() + 10_000;
    while (store.exportedCount > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    check(store.exportedCount === 0, "not freed after the last release");
    check(
      cu.cudaDeviceInfo(0).allocatedBytes === before,
      `device bytes ${cu.cudaDeviceInfo(0).allocatedBytes} != ${before} after free`,
    );
    // rejections in the consumer: a byte count that does not match, a range past the allocation
    const buf2 = cu.cudaAlloc(4096);
    cu.cudaFillUniform(buf2, 1024, 1, 0, 1);
    const d2 = await store.put("f32", [1024], buf2, { consumers: 0 });
    const loc2 = d2.loc as Extract<TensorDescriptor["loc"], { kind: "cuda" }>;
    const wrong = await ask(consumers[0], { ...d2, shape: [1000] }, false);
    check(wrong.ok === false && wrong.reason === "wrong-size", `wrong size: ${JSON.stringify(wrong)}`);
    const past = await ask(consumers[0], { ...d2, shape: [1 << 22], loc: { ...loc2, bytes: 4 << 22 } }, false);
    check(past.ok === false && past.reason === "past-end", `past end: ${JSON.stringify(past)}`);
    cu.cudaFree(buf2);
    await store.close();
    return `32 MiB f32 handed to 2 processes by IPC handle (first open+sum+release ${handoffMs.toFixed(1)} ms); freed after the 2nd release; wrong-size and past-end rejected`;
  } finally {
    for (const c of consumers) c.stop();
    await store.close();
  }
}
