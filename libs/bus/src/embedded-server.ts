// A private nats-server for one run: 127.0.0.1 only, random per-run token, JetStream in a temp
// dir, max_payload raised to 8 MB. Stopped and its dir removed on stop(), on process exit and
// on SIGINT/SIGTERM; a SIGKILLed parent's server gets SIGTERM from the kernel (spawnTied), and one
// left behind where that is unavailable is reaped by the next start.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Effect } from "effect";
import { spawnTied } from "./child-lifetime.ts";
import { errorText, NatsServerFailed } from "./errors.ts";

export interface EmbeddedServerOptions {
  /** nats-server binary (default: $MOEQ_NATS_SERVER or `nats-server` on PATH). */
  readonly binary?: string;
  /** Parent dir of the server's temp dir (default: os.tmpdir()). */
  readonly baseDir?: string;
  readonly maxPayloadBytes?: number;
  readonly startTimeoutMs?: number;
  /** JetStream store kept across restarts (a resumable run's); default: inside the temp dir, removed on stop. */
  readonly storeDir?: string;
}

export interface EmbeddedServer {
  readonly url: string;
  readonly token: string;
  readonly pid: number;
  readonly dir: string;
  stop(): Promise<void>;
}

const live = new Set<{ child: ChildProcess; dir: string }>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const s of live) {
    try {
      s.child.kill("SIGKILL");
    } catch {}
    rmSync(s.dir, { recursive: true, force: true });
  }
  live.clear();
}

// Signal handlers are only installed while a server runs, so a process without one keeps the
// default SIGINT behaviour; with one, we clean up and then die by the same signal.
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAllSync);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const onSignal = () => {
      killAllSync();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** True while `pid` runs; a zombie (exited, not yet reaped by a non-reaping init) counts as gone. */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}
const pidAlive = processRunning;

/** Kills servers (and removes dirs) whose owning process is gone. Returns how many it reaped. */
export function reapOrphanedServers(baseDir = tmpdir()): number {
  let n = 0;
  for (const d of existsSync(baseDir) ? readdirSync(baseDir) : []) {
    if (!d.startsWith("moeq-nats-")) continue;
    const dir = join(baseDir, d);
    try {
      const owner = JSON.parse(readFileSync(join(dir, "owner.json"), "utf8")) as { parent: number; server: number };
      if (pidAlive(owner.parent)) continue;
      if (pidAlive(owner.server)) process.kill(owner.server, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      n++;
    } catch {
      // not ours or half-written by a starting server: leave it
    }
  }
  return n;
}

export async function startNatsServer(opts: EmbeddedServerOptions = {}): Promise<EmbeddedServer> {
  const baseDir = opts.baseDir ?? tmpdir();
  reapOrphanedServers(baseDir);
  const dir = mkdtempSync(join(baseDir, "moeq-nats-"));
  const token = randomBytes(24).toString("hex");
  const store = opts.storeDir ?? join(dir, "js");
  mkdirSync(store, { recursive: true });
  const maxPayload = opts.maxPayloadBytes ?? 8 * 1024 * 1024;
  const conf = [
    "host: 127.0.0.1",
    "port: -1",
    `ports_file_dir: ${JSON.stringify(dir)}`,
    `max_payload: ${maxPayload}`,
    `max_pending: ${Math.max(64 * 1024 * 1024, 4 * maxPayload)}`,
    `authorization { token: ${JSON.stringify(token)} }`,
    `jetstream { store_dir: ${JSON.stringify(store)} }`,
  ].join("\n");
  writeFileSync(join(dir, "nats.conf"), conf, { mode: 0o600 });
  const binary = opts.binary ?? process.env.MOEQ_NATS_SERVER ?? "nats-server";
  // tied: a supervisor killed by SIGKILL runs no exit handler, and the server must not outlive it
  const child = spawnTied(binary, ["-c", join(dir, "nats.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const entry = { child, dir };
  live.add(entry);
  installHooks();
  const spawnError = new Promise<never>((_, reject) =>
    child.once("error", (e) => reject(new Error(`cannot run ${binary}: ${e.message}`))),
  );
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`nats-server exited with ${code}: ${stderr.trim()}`))),
  );
  const cleanup = () => {
    live.delete(entry);
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const port = await Promise.race([spawnError, exited, waitForPort(dir, child, opts.startTimeoutMs ?? 10_000)]);
    writeFileSync(join(dir, "owner.json"), JSON.stringify({ parent: process.pid, server: child.pid }));
    let stopped: Promise<void> | undefined;
    return {
      url: `nats://127.0.0.1:${port}`,
      token,
      pid: child.pid!,
      dir,
      stop: () => {
        stopped ??= (async () => {
          live.delete(entry);
          if (child.exitCode === null && child.signalCode === null) {
            const gone = new Promise<void>((r) => child.once("exit", () => r()));
            child.kill("SIGTERM");
            const t = setTimeout(() => child.kill("SIGKILL"), 3000);
            await gone;
            clearTimeout(t);
          }
          rmSync(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}

async function waitForPort(dir: string, child: ChildProcess, timeoutMs: number): Promise<number> {
  const file = join(dir, `nats-server_${child.pid}.ports`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(file)) {
      try {
        const ports = JSON.parse(readFileSync(file, "utf8")) as { nats?: string[] };
        const m = /:(\d+)$/.exec(ports.nats?.[0] ?? "");
        if (m) return Number(m[1]);
      } catch {
        // written but not complete yet
      }
    }
    await sleep(20);
  }
  throw new Error(`nats-server did not report its port within ${timeoutMs} ms`);
}

/** The embedded server as a scoped resource: stopped and cleaned when the scope closes. */
export const embeddedNatsServer = (opts: EmbeddedServerOptions = {}) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startNatsServer(opts),
      catch: (e) => new NatsServerFailed({ message: `embedded nats-server: ${errorText(e)}` }),
    }),
    (s) => Effect.promise(() => s.stop()),
  );
