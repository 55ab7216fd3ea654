// Stage processes: spawned with the run's environment, output appended to logs/<stage>.<i>.log,
// restarted (bounded) when they die before the run ends, peak RSS sampled from /proc.
import type { ChildProcess } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnTied } from "@moeq/bus";
import { ENV, EXIT_NO_SPACE } from "@moeq/runtime";
import type { ResolvedStage } from "./graph.ts";

export interface StageProcessStats {
  readonly stage: string;
  readonly instance: number;
  pids: number[];
  restarts: number;
  peakRssKiB: number;
  exit?: string;
}

export interface StageEnv {
  readonly url: string;
  readonly token?: string;
  readonly runId: string;
  readonly workDir: string;
  readonly threads: number;
  /** TRACEPARENT (the run span) and the trace file: each stage continues the run's trace */
  readonly trace?: Readonly<Record<string, string>>;
}

export function vmHwmKiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export class StageProcesses {
  private readonly children = new Map<string, ChildProcess>();
  readonly stats = new Map<string, StageProcessStats>();
  private stopping = false;
  private readonly sampler: NodeJS.Timeout;

  constructor(
    private readonly stages: readonly ResolvedStage[],
    private readonly env: StageEnv,
    private readonly logsDir: string,
    private readonly maxRestarts: number,
    /** called when an instance gives up (permanent failure or too many restarts) */
    private readonly onGiveUp: (stage: string, why: string) => void,
    private readonly onRestart: (stage: string, instance: number, why: string) => void,
    /** called when an instance ran out of disk space (exit EXIT_NO_SPACE): the run stops, resumable */
    private readonly onNoSpace: (stage: string, why: string) => void = onGiveUp,
  ) {
    mkdirSync(logsDir, { recursive: true });
    this.sampler = setInterval(() => this.sample(), 200);
    this.sampler.unref();
  }

  private sample() {
    for (const [key, c] of this.children) {
      const s = this.stats.get(key);
      if (s && c.pid) s.peakRssKiB = Math.max(s.peakRssKiB, vmHwmKiB(c.pid));
    }
  }

  startAll(): void {
    for (const s of this.stages) for (let i = 0; i < s.replicas; i++) this.start(s, i);
  }

  pidOf(stage: string, instance = 0): number | undefined {
    return this.children.get(`${stage}.${instance}`)?.pid;
  }

  private start(s: ResolvedStage, i: number): void {
    const key = `${s.name}.${i}`;
    const log = openSync(join(this.logsDir, `${key}.log`), "a");
    const child = spawnTied(s.command[0], s.command.slice(1), {
      stdio: ["ignore", log, log],
      env: {
        ...process.env,
        [ENV.parentPid]: String(process.pid),
        [ENV.url]: this.env.url,
        ...(this.env.token ? { [ENV.token]: this.env.token } : {}),
        [ENV.runId]: this.env.runId,
        [ENV.workDir]: this.env.workDir,
        [ENV.stage]: s.name,
        [ENV.instance]: String(i),
        [ENV.options]: JSON.stringify(s.options),
        // Fixed BLAS threads: the same accumulation order on every (re)start → identical bytes.
        OPENBLAS_NUM_THREADS: String(this.env.threads),
        ...this.env.trace,
      },
    });
    const st = this.stats.get(key) ?? { stage: s.name, instance: i, pids: [], restarts: 0, peakRssKiB: 0 };
    if (child.pid) st.pids.push(child.pid);
    this.stats.set(key, st);
    this.children.set(key, child);
    child.on("exit", (code, signal) => {
      if (child.pid) st.peakRssKiB = Math.max(st.peakRssKiB, vmHwmKiB(child.pid));
      this.children.delete(key);
      st.exit = signal ? signal : String(code);
      if (this.stopping || code === 0) return;
      if (code === EXIT_NO_SPACE)
        return this.onNoSpace(s.name, `${key} ran out of disk space (see ${join(this.logsDir, `${key}.log`)})`);
      if (code === 2)
        return this.onGiveUp(s.name, `${key} failed permanently (see ${join(this.logsDir, `${key}.log`)})`);
      if (st.restarts >= this.maxRestarts)
        return this.onGiveUp(
          s.name,
          `${key} died ${st.restarts + 1} times (last: ${st.exit}); see ${join(this.logsDir, `${key}.log`)}`,
        );
      st.restarts++;
      this.onRestart(s.name, i, signal ?? `exit ${code}`);
      setTimeout(() => {
        if (!this.stopping) this.start(s, i);
      }, 200);
    });
    child.on("error", (e) => this.onGiveUp(s.name, `cannot start ${s.command.join(" ")}: ${e.message}`));
  }

  get running(): number {
    return this.children.size;
  }

  async stopAll(graceMs = 5000): Promise<void> {
    this.stopping = true;
    clearInterval(this.sampler);
    const waits = [...this.children.values()].map(
      (c) =>
        new Promise<void>((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r();
          c.once("exit", () => r());
          c.kill("SIGTERM");
          setTimeout(() => c.kill("SIGKILL"), graceMs).unref();
        }),
    );
    await Promise.all(waits);
  }
}
