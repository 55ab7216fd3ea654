// TLS and credentials against a real nats-server: a throwaway CA (openssl) signs the server's
// and a client's certificate; the server requires TLS with client certificates (verify: true)
// and a user (password or nkey). A worker stage started with the documented environment
// (MOEQ_NATS_URL=tls://..., MOEQ_NATS_TLS_CA/CERT/KEY, MOEQ_NATS_NKEY_SEED_FILE or
// MOEQ_NATS_USER/PASS) joins the run; without the CA or without valid credentials it is refused
// and exits non-zero, leaving nothing in the run's log; a client without a certificate is cut
// off by the server; and `moeq quantize --nats tls://...` without the CA is refused before any
// stage starts.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { type Bus, connectBus, RunEventLog } from "@moeq/bus";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { moeq, tempDir, trainedModel } from "../helpers.ts";
import { makeCredentials } from "./nats-cluster.ts";
import { type Proc, quantizerMain, track, waitUntil } from "./remote.ts";

const binary = process.env.MOEQ_NATS_SERVER ?? "nats-server";

function openssl(args: readonly string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
}

/** CA, server certificate for 127.0.0.1/localhost, client certificate; EC P-256 (fast to make). */
function makeCertificates(dir: string): Record<"ca" | "caKey" | "cert" | "key" | "clientCert" | "clientKey", string> {
  const key = (name: string) =>
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name], dir);
  key("ca.key");
  openssl(["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=moeq test CA", "-days", "2", "-out", "ca.pem"], dir);
  const sign = (name: string, subject: string, ext: string) => {
    key(`${name}.key`);
    openssl(["req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`], dir);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
      ].concat(["-extfile", `${name}.ext`, "-out", `${name}.pem`]),
      dir,
    );
  };
  sign("server", "/CN=moeq nats", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  sign("client", "/CN=moeq worker", "extendedKeyUsage=clientAuth\n");
  return {
    ca: join(dir, "ca.pem"),
    caKey: join(dir, "ca.key"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server.key"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client.key"),
  };
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe("NATS with TLS and credentials", () => {
  let dir: string;
  let url: string;
  let certs: ReturnType<typeof makeCertificates>;
  let creds: ReturnType<typeof makeCredentials>;
  let server: Proc;
  let admin: Bus;
  const runId = `tls-${process.pid}`;

  beforeAll(async () => {
    dir = tempDir("tls");
    mkdirSync(join(dir, "pki"));
    certs = makeCertificates(join(dir, "pki"));
    creds = makeCredentials(dir);
    const port = await freePort();
    url = `tls://127.0.0.1:${port}`;
    const conf = join(dir, "nats.conf");
    writeFileSync(
      conf,
      [
        `listen: 127.0.0.1:${port}`,
        "tls {",
        `  cert_file: ${JSON.stringify(certs.cert)}`,
        `  key_file: ${JSON.stringify(certs.key)}`,
        `  ca_file: ${JSON.stringify(certs.ca)}`,
        "  verify: true",
        "  timeout: 2",
        "}",
        "authorization {",
        "  users: [",
        `    { user: ${JSON.stringify(creds.user)}, password: ${JSON.stringify(creds.pass)} }`,
        `    { nkey: ${creds.nkeyPublic} }`,
        "  ]",
        "}",
        `jetstream { store_dir: ${JSON.stringify(join(dir, "js"))}, max_file_store: 256MB, max_memory_store: 64MB }`,
      ].join("\n"),
    );
    server = track(spawn(binary, ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] }));
    await waitUntil(
      "nats-server with TLS",
      () => /Server is ready/.test(server.out) || server.child.exitCode !== null,
      20_000,
      () => server.out,
    );
    expect(server.child.exitCode, server.out).toBeNull();
    // The test's own client uses the same options as a stage (ClusterOptions of @moeq/bus).
    admin = await connectBus({
      url,
      user: creds.user,
      pass: creds.pass,
      tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey },
      name: "tls-test",
    });
    const log = await RunEventLog.open(admin, runId);
    await log.append("run", {
      type: "RunStarted",
      payload: { modelDir: join(dir, "no-model"), options: {}, graph: { version: 1, stages: [] } },
    });
  }, 60_000);

  afterAll(async () => {
    await admin?.nc.drain().catch(() => undefined);
    server?.child.kill("SIGKILL");
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A quantizer worker on "another host" with only the given environment. */
  const startWorker = (host: string, env: Record<string, string>) =>
    track(
      spawn(process.execPath, [quantizerMain, "--host-id", host], {
        env: {
          PATH: process.env.PATH,
          MOEQ_NATS_URL: url,
          MOEQ_RUN_ID: runId,
          MOEQ_INSTANCE: host,
          TMPDIR: dir,
          ...env,
        },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
  const stageHosts = async () =>
    (await (await RunEventLog.open(admin, runId)).read(1)).flatMap((e) =>
      e.type === "StageStarted" ? [e.payload.host] : [],
    );

  it("lets a worker in with the CA, its client certificate and an nkey or a user/password; refuses it without each", async () => {
    const tls = {
      MOEQ_NATS_TLS_CA: certs.ca,
      MOEQ_NATS_TLS_CERT: certs.clientCert,
      MOEQ_NATS_TLS_KEY: certs.clientKey,
    };
    const good = {
      nkey: startWorker("tls-nkey", { ...tls, MOEQ_NATS_NKEY_SEED_FILE: creds.nkeySeedFile }),
      password: startWorker("tls-user", { ...tls, MOEQ_NATS_USER: creds.user, MOEQ_NATS_PASS: creds.pass }),
    };
    const refused = {
      "no CA": startWorker("no-ca", {
        MOEQ_NATS_TLS_CERT: certs.clientCert,
        MOEQ_NATS_TLS_KEY: certs.clientKey,
        MOEQ_NATS_NKEY_SEED_FILE: creds.nkeySeedFile,
      }),
      "wrong password": startWorker("bad-pass", { ...tls, MOEQ_NATS_USER: creds.user, MOEQ_NATS_PASS: "not-it" }),
      "no credentials": startWorker("no-creds", tls),
    };
    const exits = await Promise.all(Object.values(refused).map((p) => p.exit));
    for (const [[why, p], code] of Object.entries(refused).map((e, i) => [e, exits[i]] as const)) {
      expect(code, `${why}: ${p.out}`).not.toBe(0);
      expect(p.out, why).toContain(`cannot connect to ${url}`);
    }
    expect(refused["wrong password"].out).toMatch(/Authorization Violation/i);
    expect(refused["no credentials"].out).toMatch(/Authorization Violation/i);

    await waitUntil(
      "both workers to join the run",
      () => Object.values(good).every((p) => /started \(pid/.test(p.out) || p.child.exitCode !== null),
      30_000,
    );
    for (const [why, p] of Object.entries(good)) expect(p.child.exitCode, `${why}: ${p.out}`).toBeNull();
    const hosts = await stageHosts();
    expect(new Set(hosts)).toEqual(new Set(["tls-nkey", "tls-user"]));
    // the end of the run lets remote workers go
    await (await RunEventLog.open(admin, runId)).append("run", { type: "RunCompleted", payload: { seconds: 0 } });
    for (const [why, p] of Object.entries(good)) expect(await p.exit, `${why}: ${p.out}`).toBe(0);
  }, 90_000);

  it("cuts off a client without a certificate (verify: true)", async () => {
    // The server drops the handshake without an answer the client could read, so a client only
    // sees its connect timeout (a stage: 20 s per attempt); the server's log says why.
    const t0 = Date.now();
    await expect(
      connect({ servers: url, tls: { caFile: certs.ca }, user: creds.user, pass: creds.pass, timeout: 2000 }),
    ).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(15_000);
    await waitUntil(
      "the server to log the refused handshake",
      () => /client didn't provide a certificate/.test(server.out),
      5000,
      () => server.out,
    );
  }, 30_000);

  it("refuses `moeq quantize --nats tls://...` without the CA, naming the URL", async () => {
    const args = ["--work-dir", join(dir, "work"), "--calib", "random:4x16", "--eval", "random:2x16", "--nats", url];
    const r = await moeq(["quantize", trainedModel, "--out", join(dir, "out"), ...args]);
    expect(r.code).not.toBe(0);
    expect(`${r.stdout}\n${r.stderr}`).toContain(url);
  }, 60_000);
});
