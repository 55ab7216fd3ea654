import { setTimeout as sleep } from "node:timers/promises";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection as CoreConnection, connect } from "@nats-io/transport-node";
import { Context, Effect, Layer, Schedule } from "effect";
import { type ClusterOptions, clusterConnectOptions } from "./cluster.ts";
import { errorText, NatsConnectFailed } from "./errors.ts";

// JetStream API calls wait up to 30 s (default 5 s): purging a GiB-sized object or creating a
// stream on a busy disk can take longer than 5 s, and a timeout there would fail a healthy stage.
const JS_OPTIONS = { timeout: 30_000 };

export interface NatsOptions extends ClusterOptions {
  /** One URL, or several comma-separated seed URLs of a cluster. */
  readonly url: string;
  /** Per-run secret of the embedded server. */
  readonly token?: string;
  readonly user?: string;
  readonly pass?: string;
  /** Client name shown by the server (stage/instance). */
  readonly name?: string;
  /** Connection attempts before giving up (default 8; exponential backoff, jittered). */
  readonly attempts?: number;
}

export interface Bus {
  readonly nc: CoreConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

function connectOptions(o: NatsOptions) {
  return {
    ...clusterConnectOptions(o.url, o),
    ...(o.token ? { token: o.token } : {}),
    ...(o.user ? { user: o.user, pass: o.pass } : {}),
    name: o.name,
    // The server holds the run; a stage that lost it should keep trying for a while.
    maxReconnectAttempts: 60,
    reconnectTimeWait: 500,
  };
}

/** Plain-async connect (child processes, scripts): retries with jittered exponential backoff. */
export async function connectBus(o: NatsOptions): Promise<Bus> {
  const attempts = o.attempts ?? 8;
  let lastError: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const nc = await connect(connectOptions(o));
      return { nc, js: jetstream(nc, JS_OPTIONS), jsm: await jetstreamManager(nc) };
    } catch (e) {
      lastError = e;
      // Authorization and certificate failures (unknown CA, name mismatch) will not heal by waiting.
      if (/Authorization|certificate/i.test(errorText(e))) break;
      await sleep(Math.min(5000, 50 * 2 ** i) * (0.5 + Math.random()));
    }
  }
  throw new NatsConnectFailed({ url: o.url, message: `cannot connect to ${o.url}: ${errorText(lastError)}` });
}

/** The run's NATS connection with JetStream handles; drained when the layer's scope closes. */
export class NatsConnection extends Context.Service<NatsConnection, Bus>()("@moeq/bus/NatsConnection") {
  static layer(o: NatsOptions) {
    return Layer.effect(
      NatsConnection,
      Effect.acquireRelease(
        Effect.tryPromise({
          try: () => connect(connectOptions(o)),
          catch: (e) => new NatsConnectFailed({ url: o.url, message: `cannot connect to ${o.url}: ${errorText(e)}` }),
        }).pipe(
          Effect.retry({
            schedule: Schedule.exponential("50 millis").pipe(Schedule.jittered),
            times: (o.attempts ?? 8) - 1,
            while: (e) => !/Authorization/i.test(e.message),
          }),
          Effect.flatMap((nc) =>
            Effect.tryPromise({
              try: async () => ({ nc, js: jetstream(nc, JS_OPTIONS), jsm: await jetstreamManager(nc) }),
              catch: (e) =>
                new NatsConnectFailed({ url: o.url, message: `JetStream unavailable at ${o.url}: ${errorText(e)}` }),
            }),
          ),
        ),
        (bus) => Effect.promise(() => bus.nc.drain().catch(() => undefined)),
      ),
    );
  }
}
