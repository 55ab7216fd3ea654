// The store's two-process CUDA handoff (libs/store/test/cuda-scenario.ts) on the GPU machine,
// without vitest: an embedded nats-server, the producer here, consumers as separate processes.
// Bundled (no node_modules there) by native/bench/gpu/bundle.sh into .gpu-carry/bundle/.
//   node .gpu-carry/bundle/store-handoff.mjs .gpu-carry/bundle/cuda-consumer.mjs
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { connectBus } from "../../../libs/bus/src/connection.ts";
import { startNatsServer } from "../../../libs/bus/src/embedded-server.ts";
import { cudaHandoff } from "../../../libs/store/test/cuda-scenario.ts";

const consumerScript = process.argv[2];
const nats = await startNatsServer();
const bus = await connectBus({ url: nats.url, token: nats.token, name: "gpu-store-handoff" });
const runId = `gpu${Date.now().toString(36)}`;
let code = 0;
try {
  const summary = await cudaHandoff(bus, runId, async () => {
    const p = spawn(process.execPath, [consumerScript, JSON.stringify({ url: nats.url, token: nats.token }), runId], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const pid: number = await new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error("consumer not ready in 20 s")), 20_000);
      createInterface({ input: p.stdout }).on("line", (l) => {
        try {
          const m = JSON.parse(l) as { ready?: number };
          if (m.ready) {
            clearTimeout(t);
            res(m.ready);
          }
        } catch {}
      });
    });
    return { pid, stop: () => p.kill() };
  });
  console.log(`PASS store-cuda-handoff: ${summary}`);
} catch (e) {
  console.log(`FAIL store-cuda-handoff: ${(e as Error).stack}`);
  code = 1;
}
await bus.nc.drain().catch(() => undefined);
await nats.stop();
process.exit(code);
