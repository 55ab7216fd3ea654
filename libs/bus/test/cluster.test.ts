// Cluster connection options: seed lists, credentials from the environment, nkey authentication
// against a real nats-server configured with the public key, and replica fallback on a server
// that is not part of a cluster.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { nkeys } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLUSTER_ENV,
  clusterEnv,
  clusterOptionsFromEnv,
  connectBus,
  ensureRunStreams,
  seedUrls,
  streamReplicas,
} from "../src/index.ts";

describe("cluster options", () => {
  it("split seed URLs on commas and whitespace", () => {
    expect(seedUrls("nats://a:4222, nats://b:4222,nats://c:4222")).toEqual([
      "nats://a:4222",
      "nats://b:4222",
      "nats://c:4222",
    ]);
    expect(seedUrls("nats://a:4222")).toEqual(["nats://a:4222"]);
    expect(() => seedUrls(" , ")).toThrow(/no NATS URL/);
  });

  it("read credentials, TLS files and replicas from the environment and write them back", () => {
    const env = {
      [CLUSTER_ENV.user]: "u",
      [CLUSTER_ENV.pass]: "p",
      [CLUSTER_ENV.nkeySeedFile]: "/etc/moeq/w.nk",
      [CLUSTER_ENV.tlsCa]: "/ca.pem",
      [CLUSTER_ENV.replicas]: "3",
    };
    const o = clusterOptionsFromEnv(env);
    expect(o).toEqual({
      user: "u",
      pass: "p",
      nkeySeedFile: "/etc/moeq/w.nk",
      tls: { caFile: "/ca.pem", certFile: undefined, keyFile: undefined },
      replicas: 3,
    });
    expect(clusterEnv(o)).toEqual(env);
    expect(clusterOptionsFromEnv({})).toEqual({});
    expect(() => clusterOptionsFromEnv({ [CLUSTER_ENV.replicas]: "7" })).toThrow(
      /MOEQ_NATS_REPLICAS must be an integer in \[1, 5\], got "7"/,
    );
  });

  it("choose 3 replicas on a cluster, 1 on a lone server, the explicit count otherwise", () => {
    const nc = (info: object) => ({ info }) as never;
    expect(streamReplicas(nc({ cluster: "moeq" }))).toBe(3);
    expect(streamReplicas(nc({}))).toBe(1);
    expect(streamReplicas(nc({ cluster: "moeq" }), 5)).toBe(5);
  });
});

describe("against a nats-server with an nkey user", () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  let seedFile: string;
  const kp = nkeys.createUser();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "moeq-bus-nkey-"));
    seedFile = join(dir, "user.nk");
    writeFileSync(seedFile, `# a worker's seed\n${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600 });
    writeFileSync(
      join(dir, "nats.conf"),
      [
        `listen: 127.0.0.1:-1`,
        `ports_file_dir: ${JSON.stringify(dir)}`,
        `authorization { users: [ { nkey: ${kp.getPublicKey()} } ] }`,
        `jetstream { store_dir: ${JSON.stringify(join(dir, "js"))} }`,
      ].join("\n"),
    );
    server = spawn(process.env.MOEQ_NATS_SERVER ?? "nats-server", ["-c", join(dir, "nats.conf")], { stdio: "ignore" });
    const ports = join(dir, `nats-server_${server.pid}.ports`);
    for (let i = 0; i < 200 && !url; i++) {
      try {
        url = (JSON.parse(readFileSync(ports, "utf8")) as { nats: string[] }).nats[0];
      } catch {
        await sleep(25);
      }
    }
  });
  afterAll(() => {
    server?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("connects with the seed file (several seeds, one of them down) and creates R1 streams when asked for R3", async () => {
    const bus = await connectBus({
      url: `nats://127.0.0.1:1,${url}`,
      nkeySeedFile: seedFile,
      name: "nkey-test",
      attempts: 3,
    });
    try {
      await ensureRunStreams(bus.jsm, "nkeyrun", { replicas: 3 });
      expect((await bus.jsm.streams.info("MOEQ_nkeyrun")).config.num_replicas).toBe(1);
    } finally {
      await bus.nc.drain();
    }
  });

  it("is refused without the right seed, with an error naming the server", async () => {
    const other = join(dir, "other.nk");
    writeFileSync(other, new TextDecoder().decode(nkeys.createUser().getSeed()));
    await expect(connectBus({ url, nkeySeedFile: other, attempts: 2 })).rejects.toMatchObject({
      _tag: "NatsConnectFailed",
      url,
    });
  });

  it("rejects a seed file without a user seed before connecting", async () => {
    const junk = join(dir, "junk.nk");
    writeFileSync(junk, "not a seed");
    await expect(connectBus({ url, nkeySeedFile: junk, attempts: 1 })).rejects.toThrow(
      /junk.nk holds no user nkey seed/,
    );
  });
});
