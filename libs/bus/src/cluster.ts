// Connecting to a NATS cluster instead of one embedded server: several seed URLs (the client
// learns the rest from the cluster's gossip and fails over between them), credentials by nkey
// or user/password, TLS, and JetStream replicas when the cluster has peers to hold them.
import { readFileSync } from "node:fs";
import type { NatsConnection as CoreConnection } from "@nats-io/transport-node";
import { nkeyAuthenticator } from "@nats-io/transport-node";
import { Data } from "effect";

/** A cluster option that cannot be used (unreadable seed file, bad replica count, ...). */
export class ClusterConfigError extends Data.TaggedError("ClusterConfigError")<{
  readonly field: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

export interface TlsFiles {
  /** CA bundle that signed the servers' certificates (PEM). */
  readonly caFile?: string;
  /** Client certificate and key for mutual TLS (PEM). */
  readonly certFile?: string;
  readonly keyFile?: string;
}

export interface ClusterOptions {
  /** NKEY seed (`SU...`) file of this client's user; the server config lists the public key. */
  readonly nkeySeedFile?: string;
  /** Require TLS; files are optional (system CAs are used without caFile). */
  readonly tls?: TlsFiles;
  /** JetStream replicas of the run's streams; default: 3 on a cluster, 1 on a single server. */
  readonly replicas?: number;
}

/** Environment variables that carry the cluster options to stage processes on any host. */
export const CLUSTER_ENV = {
  user: "MOEQ_NATS_USER",
  pass: "MOEQ_NATS_PASS",
  nkeySeedFile: "MOEQ_NATS_NKEY_SEED_FILE",
  tlsCa: "MOEQ_NATS_TLS_CA",
  tlsCert: "MOEQ_NATS_TLS_CERT",
  tlsKey: "MOEQ_NATS_TLS_KEY",
  replicas: "MOEQ_NATS_REPLICAS",
  hostId: "MOEQ_HOST_ID",
} as const;

/** `nats://a:4222,nats://b:4222` (or whitespace separated) → the seed list, trimmed, non-empty. */
export function seedUrls(url: string): string[] {
  const seeds = url
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (seeds.length === 0)
    throw new ClusterConfigError({ field: "url", message: `no NATS URL in ${JSON.stringify(url)}` });
  return seeds;
}

function readSeed(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ClusterConfigError({
      field: "nkeySeedFile",
      message: `cannot read the nkey seed file ${file}: ${(e as Error).message}`,
    });
  }
  // A seed file may hold comments or a creds-style block; the seed is the one `SU…` token.
  const m = /\bSU[A-Z2-7]{56}\b/.exec(text);
  if (!m) throw new ClusterConfigError({ field: "nkeySeedFile", message: `${file} holds no user nkey seed (SU…)` });
  return new TextEncoder().encode(m[0]);
}

/** The connection-option part that clusters add: servers list, nkey authenticator, TLS. */
export function clusterConnectOptions(url: string, o: ClusterOptions) {
  const tls = o.tls;
  return {
    servers: seedUrls(url),
    ...(o.nkeySeedFile ? { authenticator: nkeyAuthenticator(readSeed(o.nkeySeedFile)) } : {}),
    ...(tls
      ? {
          tls: {
            ...(tls.caFile ? { caFile: tls.caFile } : {}),
            ...(tls.certFile ? { certFile: tls.certFile } : {}),
            ...(tls.keyFile ? { keyFile: tls.keyFile } : {}),
          },
        }
      : {}),
  };
}

function replicasFrom(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 5)
    throw new ClusterConfigError({
      field: CLUSTER_ENV.replicas,
      message: `${CLUSTER_ENV.replicas} must be an integer in [1, 5], got ${JSON.stringify(v)}`,
    });
  return n;
}

/** Cluster options (and user/password) from the environment a stage process was started with. */
export function clusterOptionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): ClusterOptions & { user?: string; pass?: string } {
  const tlsWanted = env[CLUSTER_ENV.tlsCa] || env[CLUSTER_ENV.tlsCert] || env[CLUSTER_ENV.tlsKey];
  const replicas = replicasFrom(env[CLUSTER_ENV.replicas]);
  return {
    ...(env[CLUSTER_ENV.user] ? { user: env[CLUSTER_ENV.user], pass: env[CLUSTER_ENV.pass] ?? "" } : {}),
    ...(env[CLUSTER_ENV.nkeySeedFile] ? { nkeySeedFile: env[CLUSTER_ENV.nkeySeedFile] } : {}),
    ...(tlsWanted
      ? {
          tls: {
            caFile: env[CLUSTER_ENV.tlsCa] || undefined,
            certFile: env[CLUSTER_ENV.tlsCert] || undefined,
            keyFile: env[CLUSTER_ENV.tlsKey] || undefined,
          },
        }
      : {}),
    ...(replicas ? { replicas } : {}),
  };
}

/** The reverse: environment entries that hand these options to a child process. */
export function clusterEnv(o: ClusterOptions & { user?: string; pass?: string }): Record<string, string> {
  const out: Record<string, string> = {};
  if (o.user) {
    out[CLUSTER_ENV.user] = o.user;
    out[CLUSTER_ENV.pass] = o.pass ?? "";
  }
  if (o.nkeySeedFile) out[CLUSTER_ENV.nkeySeedFile] = o.nkeySeedFile;
  if (o.tls?.caFile) out[CLUSTER_ENV.tlsCa] = o.tls.caFile;
  if (o.tls?.certFile) out[CLUSTER_ENV.tlsCert] = o.tls.certFile;
  if (o.tls?.keyFile) out[CLUSTER_ENV.tlsKey] = o.tls.keyFile;
  if (o.replicas) out[CLUSTER_ENV.replicas] = String(o.replicas);
  return out;
}

/**
 * Replicas for a run's streams on this connection: the explicit choice, else 3 when the server
 * we reached is part of a cluster (its INFO names one) and 1 otherwise. Three survives the loss
 * of one server while a majority (2) still elects a leader; the stream code falls back to 1 when
 * the cluster has no JetStream peers for it.
 */
export function streamReplicas(nc: CoreConnection, explicit?: number): number {
  if (explicit) return explicit;
  const fromEnv = replicasFrom(process.env[CLUSTER_ENV.replicas]);
  if (fromEnv) return fromEnv;
  const info = nc.info as { cluster?: string } | undefined;
  return info?.cluster ? 3 : 1;
}
