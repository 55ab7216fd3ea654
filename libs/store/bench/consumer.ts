// The benchmark's consumer process. argv: natsJson runId root
// Requests on moeq.<runId>.bench: {descriptor} → opens it (shm: maps; obj: downloads), replies
// {bytes, first} and releases.
import { connectBus } from "@moeq/bus";
import { packValue, TensorDescriptor, unpackValue, validate } from "@moeq/contracts";
import { Result } from "effect";
import { RunTensorStore } from "../dist/index.js";

const [natsJson, runId, root] = process.argv.slice(2);
const bus = await connectBus({ ...JSON.parse(natsJson), name: "bench-consumer" });
const store = await RunTensorStore.open(bus, { runId, allowedRoots: [root] });
const sub = bus.nc.subscribe(`moeq.${runId}.bench`);
console.log("ready");
for await (const m of sub) {
  try {
    const req = Result.getOrThrow(unpackValue(m.data, m.subject)) as { descriptor: unknown; release: boolean };
    const d = Result.getOrThrow(validate(TensorDescriptor, req.descriptor, m.subject));
    const o = await store.open(d);
    const reply = packValue({ bytes: o.tensor.data.byteLength, first: o.tensor.data[0] });
    if (req.release) await o.release();
    m.respond(reply);
  } catch (e) {
    m.respond(packValue({ error: `${(e as { _tag?: string })._tag ?? "Error"}: ${(e as Error).message}` }));
  }
}
