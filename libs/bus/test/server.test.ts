import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { Effect, Exit } from "effect";
import { describe, expect, it } from "vitest";
import {
  connectBus,
  embeddedNatsServer,
  NatsConnection,
  processRunning,
  reapOrphanedServers,
  startNatsServer,
} from "../src/index.ts";
import { spawnNode } from "./child.ts";

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures");
const alive = processRunning;

describe("embedded nats-server", () => {
  it("listens on 127.0.0.1 only, requires the run's token, raises max_payload, and cleans up on stop", async () => {
    const s = await startNatsServer();
    try {
      expect(s.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
      await expect(connect({ servers: s.url })).rejects.toThrow(/Authorization/);
      await expect(connect({ servers: s.url, token: "wrong" })).rejects.toThrow(/Authorization/);
      const bus = await connectBus({ url: s.url, token: s.token });
      expect(bus.nc.info?.max_payload).toBe(8 * 1024 * 1024);
      expect(bus.nc.info?.jetstream).toBe(true);
      await bus.nc.drain();
    } finally {
      await s.stop();
    }
    expect(alive(s.pid)).toBe(false);
    expect(existsSync(s.dir)).toBe(false);
  });

  it("as an Effect scoped resource: stopped when the scope closes; NatsConnection layer connects", async () => {
    let seen: { pid: number; dir: string } | undefined;
    const program = Effect.scoped(
      Effect.gen(function* () {
        const s = yield* embeddedNatsServer();
        seen = s;
        const info = yield* Effect.scoped(
          Effect.gen(function* () {
            const bus = yield* NatsConnection;
            return bus.nc.info?.max_payload;
          }).pipe(Effect.provide(NatsConnection.layer({ url: s.url, token: s.token }))),
        );
        return info;
      }),
    );
    const exit = await Effect.runPromiseExit(program);
    expect(Exit.isSuccess(exit) && exit.value).toBe(8 * 1024 * 1024);
    expect(alive(seen!.pid)).toBe(false);
    expect(existsSync(seen!.dir)).toBe(false);
  });

  it("a wrong token fails the layer with NatsConnectFailed without retrying forever", async () => {
    const s = await startNatsServer();
    try {
      const exit = await Effect.runPromiseExit(
        Effect.scoped(
          Effect.gen(function* () {
            yield* NatsConnection;
          }).pipe(Effect.provide(NatsConnection.layer({ url: s.url, token: "nope" }))),
        ),
      );
      expect(Exit.isFailure(exit)).toBe(true);
      expect(JSON.stringify(exit)).toContain("NatsConnectFailed");
    } finally {
      await s.stop();
    }
  });

  it("a missing binary fails with NatsServerFailed naming it", async () => {
    const exit = await Effect.runPromiseExit(Effect.scoped(embeddedNatsServer({ binary: "/nonexistent/nats-server" })));
    expect(Exit.isFailure(exit)).toBe(true);
    expect(JSON.stringify(exit)).toContain('"_tag":"NatsServerFailed"');
    expect(JSON.stringify(exit)).toContain("cannot run /nonexistent/nats-server");
  });

  it("no server at the URL: connectBus gives up with NatsConnectFailed naming the URL", async () => {
    const s = await startNatsServer();
    const url = s.url;
    await s.stop();
    await expect(connectBus({ url, token: s.token, attempts: 2 })).rejects.toMatchObject({
      _tag: "NatsConnectFailed",
      url,
    });
  });

  it.each(["SIGTERM", "SIGINT"] as const)(
    "the parent's %s stops the server and removes its dir",
    async (sig) => {
      const owner = spawnNode(join(fixtures, "server-owner.ts"), []);
      const info = (await owner.waitFor((l) => typeof l.pid === "number")) as { pid: number; dir: string };
      expect(alive(info.pid)).toBe(true);
      await owner.kill(sig);
      expect(owner.proc.signalCode).toBe(sig);
      await new Promise((r) => setTimeout(r, 200));
      expect(alive(info.pid)).toBe(false);
      expect(existsSync(info.dir)).toBe(false);
    },
    30_000,
  );

  it("a server whose parent is SIGKILLed dies with it (parent-death signal); the next start reaps its dir", async () => {
    const owner = spawnNode(join(fixtures, "server-owner.ts"), []);
    const info = (await owner.waitFor((l) => typeof l.pid === "number")) as { pid: number; dir: string };
    await owner.kill("SIGKILL");
    const deadline = Date.now() + 5000;
    while (alive(info.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(info.pid)).toBe(false);
    expect(existsSync(info.dir)).toBe(true);
    expect(reapOrphanedServers()).toBeGreaterThanOrEqual(1);
    expect(existsSync(info.dir)).toBe(false);
  }, 30_000);
});
