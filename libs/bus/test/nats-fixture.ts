// The NATS server the integration tests run against: testcontainers' NATS module where a Docker
// engine answers, else the local nats-server binary through the embedded-server code.
import { execFileSync } from "node:child_process";
import { type Bus, connectBus } from "../src/connection.ts";
import { startNatsServer } from "../src/embedded-server.ts";

export interface TestNats {
  readonly url: string;
  readonly token?: string;
  readonly user?: string;
  readonly pass?: string;
  readonly kind: "testcontainers" | "local nats-server";
  connect(name?: string): Promise<Bus>;
  stop(): Promise<void>;
}

function dockerAvailable(): boolean {
  try {
    execFileSync("docker", ["info"], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

export async function startTestNats(): Promise<TestNats> {
  if (dockerAvailable()) {
    const { NatsContainer } = await import("@testcontainers/nats");
    const user = "moeq";
    const pass = Math.random().toString(36).slice(2);
    const c = await new NatsContainer("nats:2.10").withJetStream().withUsername(user).withPass(pass).start();
    const url = `nats://${c.getHost()}:${c.getMappedPort(4222)}`;
    console.log(`[bus tests] NATS: testcontainers nats:2.10 at ${url}`);
    return {
      url,
      user,
      pass,
      kind: "testcontainers",
      connect: (name) => connectBus({ url, user, pass, name }),
      stop: async () => {
        await c.stop();
      },
    };
  }
  const s = await startNatsServer();
  console.log(`[bus tests] NATS: local nats-server (no Docker engine) at ${s.url}`);
  return {
    url: s.url,
    token: s.token,
    kind: "local nats-server",
    connect: (name) => connectBus({ url: s.url, token: s.token, name }),
    stop: () => s.stop(),
  };
}

let n = 0;
export const freshRunId = (tag: string) => `t${process.pid}-${tag}-${n++}`;

/** Connection settings for a child process (argv JSON). */
export const natsArg = (n: { url: string; token?: string; user?: string; pass?: string }) =>
  JSON.stringify({ url: n.url, token: n.token, user: n.user, pass: n.pass });
