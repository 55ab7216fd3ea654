// Benchmark: handing a tensor to another process by shm descriptor vs. through the NATS object
// store (what a consumer on another host would do), 1 MiB … 1 GiB. Prints a markdown table of
// times and ratios measured in this run; exits 1 if a descriptor round trip exceeds 5 ms.
// Run after `turbo run build`:  node libs/store/bench/handoff.ts [maxMiB]
import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connectBus, startNatsServer } from "@moeq/bus";
import { packValue, unpackValue } from "@moeq/contracts";
import { Result } from "effect";
import { RunTensorStore } from "../dist/index.js";

const LIMIT_MS = 5;
const maxMiB = Number(process.argv[2] ?? 1024);
const sizes = [1, 4, 16, 64, 256, 1024].filter((m) => m <= maxMiB).map((m) => m * 1024 * 1024);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startNatsServer();
const root = mkdtempSync(join(tmpdir(), "moeq-bench-"));
const runId = `bench${process.pid}`;
const bus = await connectBus({ url: server.url, token: server.token, name: "bench-producer" });
const store = await RunTensorStore.open(bus, { runId, allowedRoots: [root], owner: true });
const here = dirname(fileURLToPath(import.meta.url));
const child = spawn(
  process.execPath,
  [join(here, "consumer.ts"), JSON.stringify({ url: server.url, token: server.token }), runId, root],
  {
    stdio: ["ignore", "pipe", "inherit"],
  },
);
await new Promise<void>((resolve) => createInterface({ input: child.stdout! }).once("line", () => resolve()));

const subject = `moeq.${runId}.bench`;
const ask = async (descriptor: unknown, release: boolean) => {
  const t0 = performance.now();
  const reply = await bus.nc.request(subject, packValue({ descriptor, release }), { timeout: 300_000 });
  const ms = performance.now() - t0;
  const r = unpackValue(reply.data, subject);
  if (Result.isFailure(r) || (r.success as { error?: string }).error)
    throw new Error(`consumer failed: ${JSON.stringify(Result.isFailure(r) ? r.failure.message : r.success)}`);
  return ms;
};

interface Row {
  size: number;
  rt: number;
  shm: number;
  obj: number;
}
const rows: Row[] = [];
let failed = false;
try {
  // Warm both processes' JIT and connections before anything is timed.
  const warm = await store.allocate("u8", [4096], { consumers: 0 });
  for (let i = 0; i < 50; i++) await ask(warm.descriptor, false);
  warm.seal();
  for (const size of sizes) {
    // 1. Zero-copy: the producer fills the segment in place; the handoff is one message.
    const a = await store.allocate("u8", [size], { consumers: 0 });
    randomFillSync(a.data);
    const rts: number[] = [];
    for (let i = 0; i < 20; i++) {
      const ms = await ask(a.descriptor, false);
      if (i >= 5) rts.push(ms); // the first requests warm up both processes' JIT
    }
    const data = a.data.slice();
    a.seal();
    // 2. From a JS buffer: copy into a new segment, then the message.
    const reps = size >= 256 * 1024 * 1024 ? 1 : 3;
    const shm: number[] = [];
    const obj: number[] = [];
    for (let r = 0; r < reps; r++) {
      let t0 = performance.now();
      const d = await store.put({ dtype: "u8", shape: [size], data }, { prefer: "shm", consumers: 1 });
      await ask(d, true);
      shm.push(performance.now() - t0);
      // 3. The object store: upload, message, download.
      t0 = performance.now();
      const o = await store.put({ dtype: "u8", shape: [size], data }, { prefer: "obj", consumers: 1 });
      await ask(o, true);
      obj.push(performance.now() - t0);
    }
    const row = { size, rt: median(rts), shm: median(shm), obj: median(obj) };
    rows.push(row);
    if (row.rt > LIMIT_MS) failed = true;
    console.error(
      `${size / 1048576} MiB: descriptor ${row.rt.toFixed(2)} ms, shm put+handoff ${row.shm.toFixed(1)} ms, obj ${row.obj.toFixed(1)} ms`,
    );
  }
} finally {
  child.kill();
  await store.endRun();
  await bus.nc.drain();
  await server.stop();
  rmSync(root, { recursive: true, force: true });
}

console.log(
  "| size | descriptor round trip (ms) | shm put + handoff (ms) | object store put + get (ms) | obj / descriptor | obj / shm put |",
);
console.log("|---:|---:|---:|---:|---:|---:|");
for (const r of rows)
  console.log(
    `| ${r.size >= 1073741824 ? `${r.size / 1073741824} GiB` : `${r.size / 1048576} MiB`} | ${r.rt.toFixed(2)} | ${r.shm.toFixed(1)} | ${r.obj.toFixed(1)} | ${(r.obj / r.rt).toFixed(0)}× | ${(r.obj / r.shm).toFixed(1)}× |`,
  );
if (failed) {
  console.error(`FAIL: a descriptor round trip exceeded ${LIMIT_MS} ms`);
  process.exit(1);
}
