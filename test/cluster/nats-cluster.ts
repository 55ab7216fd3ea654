// A three-node NATS cluster (JetStream, R3-capable) whose nodes run in the simulated hosts of a
// TestNet. Accepts a user/password (the home host's stages) and an nkey user (the workers).
import type { ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { nkeys } from "@nats-io/transport-node";
import type { TestNet } from "./netns.ts";

export interface ClusterCredentials {
  readonly user: string;
  readonly pass: string;
  /** file holding a user nkey seed (SU...) */
  readonly nkeySeedFile: string;
  readonly nkeyPublic: string;
}

export interface NatsNode {
  readonly name: string;
  readonly host: string;
  readonly url: string;
  child: ChildProcess;
  log: string;
}

export interface TestCluster {
  readonly nodes: NatsNode[];
  /** comma-separated seed URLs, what stages get as MOEQ_NATS_URL */
  readonly seeds: string;
  readonly creds: ClusterCredentials;
  kill(name: string): void;
}

const binary = process.env.MOEQ_NATS_SERVER ?? "nats-server";

export function makeCredentials(dir: string): ClusterCredentials {
  const kp = nkeys.createUser();
  const nkeySeedFile = join(dir, "worker.nk");
  writeFileSync(nkeySeedFile, `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600 });
  return {
    user: "moeq",
    pass: Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2),
    nkeySeedFile,
    nkeyPublic: kp.getPublicKey(),
  };
}

export function nodeConfig(name: string, addr: string, peers: readonly string[], creds: ClusterCredentials): string {
  return [
    `server_name: ${name}`,
    `listen: ${addr}:4222`,
    "max_payload: 8MB",
    "max_pending: 64MB",
    "authorization {",
    "  users: [",
    `    { user: ${JSON.stringify(creds.user)}, password: ${JSON.stringify(creds.pass)} }`,
    `    { nkey: ${creds.nkeyPublic} }`,
    "  ]",
    "}",
    "jetstream { max_file_store: 1GB, max_memory_store: 256MB }",
    "cluster {",
    "  name: moeq-test",
    `  listen: ${addr}:6222`,
    `  routes: [${peers.map((p) => `nats-route://${p}:6222`).join(", ")}]`,
    "}",
  ].join("\n");
}

/** Starts one node per host name and waits until all are ready and one is the JetStream meta leader. */
export async function startCluster(
  net: TestNet,
  hosts: readonly string[],
  dir: string,
  creds: ClusterCredentials,
  timeoutMs = 30_000,
): Promise<TestCluster> {
  const nodes: NatsNode[] = hosts.map((h, i) => {
    const name = `n${i + 1}`;
    const addr = net.host(h).addr;
    const conf = join(dir, `${name}.conf`);
    const store = join(dir, `${name}-js`);
    mkdirSync(store, { recursive: true });
    writeFileSync(
      conf,
      nodeConfig(
        name,
        addr,
        hosts.filter((x) => x !== h).map((x) => net.host(x).addr),
        creds,
      ),
    );
    const child = net.spawn(h, binary, ["-c", conf, "-js", "-sd", store]);
    const node: NatsNode = { name, host: h, url: `nats://${addr}:4222`, child, log: "" };
    const onData = (b: Buffer) => {
      node.log = (node.log + b.toString()).slice(-200_000);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    return node;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = nodes.find((n) => n.child.exitCode !== null);
    if (dead) throw new Error(`nats-server ${dead.name} exited: ${dead.log.slice(-2000)}`);
    // Every node is up and one has been elected (the others may learn it without logging it).
    if (nodes.every((n) => /Server is ready/.test(n.log)) && nodes.some((n) => /metadata leader/.test(n.log))) {
      return {
        nodes,
        seeds: nodes.map((n) => n.url).join(","),
        creds,
        kill: (name) => nodes.find((n) => n.name === name)?.child.kill("SIGKILL"),
      };
    }
    await sleep(100);
  }
  throw new Error(
    `the NATS cluster did not elect a JetStream leader in ${timeoutMs} ms:\n${nodes.map((n) => `--- ${n.name}\n${n.log.slice(-1500)}`).join("\n")}`,
  );
}
