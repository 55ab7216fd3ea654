// Consumer side of checkIpc (cuda_checks.ts): opens the producer's allocation by IPC handle,
// waits for its event on the GPU, sums the floats, writes 2·x into the next half (through a
// second view of the same allocation) and records the "consumed" event. Prints one JSON line.
import { cudaKernels } from "../ts/device.ts";

const input = await new Promise<string>((res) => {
  let s = "";
  process.stdin.on("data", (c: Buffer) => {
    s += c.toString();
  });
  process.stdin.on("end", () => res(s));
});
const m = JSON.parse(input) as {
  handle: string;
  offset: number;
  n: number;
  allocationBytes: number;
  produced: string;
  consumed: string;
};
const cu = cudaKernels(0);
const handle = new Uint8Array(Buffer.from(m.handle, "hex"));
const produced = cu.cudaIpcEventOpen(new Uint8Array(Buffer.from(m.produced, "hex")), 0);
const consumed = cu.cudaIpcEventOpen(new Uint8Array(Buffer.from(m.consumed, "hex")), 0);
cu.cudaEventWait(produced);
const view = cu.cudaIpcOpen(handle, 0, m.offset, m.n * 4);
const x = new Float32Array(m.n);
cu.cudaDownload(view, x);
let sum = 0;
for (const v of x) sum += v;
const doubled = Float32Array.from(x, (v) => v * 2);
const next = cu.cudaIpcOpen(handle, 0, m.offset + m.n * 4, m.n * 4);
cu.cudaUpload(next, doubled);
cu.cudaEventRecord(consumed);
cu.cudaEventSynchronize(consumed);
let pastEnd = "not rejected";
try {
  cu.cudaIpcOpen(handle, 0, m.offset, m.allocationBytes * 2);
} catch (e) {
  pastEnd = (e as Error).message;
}
cu.cudaFree(view);
cu.cudaFree(next);
process.stdout.write(`${JSON.stringify({ sum, pastEnd, wrote: m.n })}\n`);
