// Which host a process is on, and what a descriptor means to a consumer on another host: `file`,
// `shm` and `cuda` locations name things (paths, segments, device allocations) that exist only
// on the producer's machine; `obj` and `inline` carry or reach the bytes from anywhere.
import { hostname } from "node:os";
import type { Location } from "@moeq/contracts";

/** `--host-id` / $MOEQ_HOST_ID, else the machine's hostname (network namespaces share it: set one). */
export function localHostId(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv): string {
  const i = argv.indexOf("--host-id");
  const fromArgv = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith("--host-id="))?.slice("--host-id=".length);
  const id = fromArgv ?? env.MOEQ_HOST_ID ?? hostname();
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id))
    throw new Error(
      `host id ${JSON.stringify(id)}: expected 1–64 characters of [A-Za-z0-9_-] (it is part of NATS subjects)`,
    );
  return id;
}

/** How a consumer reaches a location: open it where it is, or have the producer's host publish it. */
export type Reach = "direct" | "export" | "unreachable";

export function reachOf(loc: Location, producerHost: string, consumerHost: string): Reach {
  if (loc.kind === "inline" || loc.kind === "obj") return "direct";
  if (producerHost === consumerHost) return "direct";
  // A CUDA IPC handle is only valid on the GPU's machine, and the bytes live in device memory
  // that the producer's host file server cannot read.
  if (loc.kind === "cuda") return "unreachable";
  return "export";
}

/** What a producer should publish for a consumer: shm on its own host, the object store elsewhere. */
export function preferredLocation(producerHost: string, consumerHost: string | undefined): "shm" | "obj" {
  return consumerHost !== undefined && consumerHost !== producerHost ? "obj" : "shm";
}
