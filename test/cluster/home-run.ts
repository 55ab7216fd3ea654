// Setting up a multi-host run, shared by the cluster test and the benchmark: the three-node NATS
// cluster (user/password for the home host, an nkey for the workers) reachable from the home
// host, and `moeq quantize` started on the home host against it. (Plain TypeScript without
// parameter properties: the benchmark runs it through Node's type stripping.)
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ClusterCredentials, makeCredentials, startCluster, type TestCluster } from "./nats-cluster.ts";
import type { TestNet } from "./netns.ts";
import { cliMain, type Proc, track, waitForJetStream, waitUntil } from "./remote.ts";

export interface ClusterHome {
  readonly cluster: TestCluster;
  readonly creds: ClusterCredentials;
  /** what the home host's processes run with: seeds, user/password, MOEQ_HOST_ID=home */
  readonly homeEnv: NodeJS.ProcessEnv;
}

/** Starts nats-server on `natsHosts` (configs and the nkey seed under `secrets`) and waits until JetStream answers `home`. */
export async function startClusterForHome(
  net: TestNet,
  secrets: string,
  natsHosts: readonly string[] = ["nats1", "nats2", "nats3"],
  home = "home",
): Promise<ClusterHome> {
  const natsDir = join(secrets, "nats");
  mkdirSync(natsDir, { recursive: true });
  const creds = makeCredentials(secrets);
  const cluster = await startCluster(net, natsHosts, natsDir, creds);
  const homeEnv = {
    ...process.env,
    MOEQ_NATS_USER: creds.user,
    MOEQ_NATS_PASS: creds.pass,
    MOEQ_HOST_ID: home,
    MOEQ_NATS_URL: cluster.seeds,
  };
  await waitForJetStream(net, home, homeEnv);
  return { cluster, creds, homeEnv };
}

export interface HomeRunOptions {
  readonly model: string;
  readonly out: string;
  readonly workDir: string;
  readonly graph: string;
  /** quantize options after the model, --out, --work-dir, --nats, --graph and --json */
  readonly args: readonly string[];
  /** how long run.json may take to appear */
  readonly timeoutMs?: number;
}

export interface HomeRun {
  readonly supervisor: Proc;
  readonly runId: string;
}

/** `moeq quantize` on the home host against the cluster; resolves with the run id once run.json is written. */
export async function startHomeRun(net: TestNet, c: ClusterHome, o: HomeRunOptions, home = "home"): Promise<HomeRun> {
  const supervisor = track(
    net.spawn(
      home,
      process.execPath,
      [
        cliMain,
        "quantize",
        o.model,
        "--out",
        o.out,
        "--work-dir",
        o.workDir,
        "--nats",
        c.cluster.seeds,
        "--graph",
        o.graph,
        "--json",
        ...o.args,
      ],
      { env: c.homeEnv },
    ),
  );
  const runJson = join(o.workDir, "run.json");
  await waitUntil(
    "run.json",
    () => existsSync(runJson) || supervisor.child.exitCode !== null,
    o.timeoutMs ?? 60_000,
    () => supervisor.out,
  );
  if (!existsSync(runJson))
    throw new Error(`moeq quantize exited (${supervisor.child.exitCode}) before writing run.json:\n${supervisor.out}`);
  const runId = (JSON.parse(readFileSync(runJson, "utf8")) as { runId: string }).runId;
  return { supervisor, runId };
}
