// The life of a stage process: connect to the run's bus, replay the run's events (so a restarted
// stage knows what is done), run the stage's work, append events with deterministic ids, report
// failures as events, exit when its parent (the supervisor) is gone, and leave its resource
// usage in the work dir for the summary.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type Bus, clusterOptionsFromEnv, connectBus, RunEventLog, RunWorkQueues } from "@moeq/bus";
import { type Event, type EventOf, type EventType, type NewEvent, runFailedMsgId } from "@moeq/contracts";
import { HostTensors, localHostId } from "@moeq/store";
import * as T from "@moeq/telemetry";
import { EXIT_NO_SPACE, isNoSpaceError, StageError } from "./errors.ts";
import { eventKey } from "./events.ts";
import type { RunOptions } from "./options.ts";
import { modelRoots, type RunInfo, readRunInfo, runPaths } from "./run-dir.ts";
import { TensorReader } from "./tensors.ts";

/** What the supervisor passes to every stage process. */
export const ENV = {
  url: "MOEQ_NATS_URL",
  token: "MOEQ_NATS_TOKEN",
  runId: "MOEQ_RUN_ID",
  workDir: "MOEQ_WORK_DIR",
  stage: "MOEQ_STAGE",
  instance: "MOEQ_INSTANCE",
  options: "MOEQ_STAGE_OPTIONS",
  /** OTLP JSON-lines file every process of the run appends its spans to (`--trace-file`) */
  traceFile: "MOEQ_TRACE_FILE",
  /** the supervisor's pid: a stage whose parent is no longer that process exits before any work */
  parentPid: "MOEQ_PARENT_PID",
} as const;

export interface StageContext {
  readonly stage: string;
  readonly instance: string;
  readonly runId: string;
  readonly workDir: string;
  readonly modelDir: string;
  readonly outDir: string;
  readonly options: RunOptions;
  /** this stage's options from the graph */
  readonly stageOptions: Readonly<Record<string, unknown>>;
  readonly bus: Bus;
  readonly log: RunEventLog;
  readonly queues: RunWorkQueues;
  readonly reader: TensorReader;
  readonly paths: ReturnType<typeof runPaths>;
  readonly events: readonly Event[];
  /** `--host-id` / $MOEQ_HOST_ID (default: hostname) */
  readonly hostId: string;
  /** started without the run's work dir (a worker on another host): tensors go through the object store */
  readonly remote: boolean;
  /** host-aware tensor access (opened on first use; a remote worker asks the home host who it is) */
  host(): Promise<HostTensors>;
  has(key: string): boolean;
  find<T extends EventType>(type: T, pred?: (e: EventOf<T>) => boolean): EventOf<T> | undefined;
  all<T extends EventType>(type: T, pred?: (e: EventOf<T>) => boolean): EventOf<T>[];
  waitFor<T extends EventType>(type: T, pred?: (e: EventOf<T>) => boolean): Promise<EventOf<T>>;
  /** Resolves when `cond` holds over the events seen so far (re-checked on every new event). */
  until(cond: () => boolean): Promise<void>;
  /** Appends unless an event with the same key is already in the log. */
  emit(event: NewEvent): Promise<void>;
  /** Test hook: sleeps `pauseMs` (graph option) between units of work, so a test can kill mid-run. */
  pause(): Promise<void>;
  say(line: string): void;
}

export interface StageDefinition {
  readonly name: string;
  readonly version: string;
  /** Resolves when the stage's job is done (the process then exits 0); long-lived stages never resolve. */
  run(ctx: StageContext): Promise<void>;
}

const errorInfo = (e: unknown) => ({
  tag: (e as { _tag?: string })?._tag ?? (e instanceof Error ? e.name : "Error"),
  message: e instanceof Error ? e.message : String((e as { message?: unknown })?.message ?? e),
  ...(e instanceof Error && e.stack ? { stack: e.stack.slice(0, 4000) } : {}),
});

/** Errors about the run's inputs that no restart can fix. */
const PERMANENT_TAGS = new Set([
  "OptionsError",
  "ModelConfigError",
  "ModelWeightError",
  "UnknownArchitectureError",
  "TokenizerLoadError",
  "CalibSpecError",
  "TextSourceError",
  "NotEnoughTokensError",
  "IntQuantInputError",
  "FormatError",
  "SafetensorsError",
  "TelemetryConfigInvalid",
]);
export const isPermanentError = (e: unknown): boolean =>
  (e as { permanent?: unknown })?.permanent === true || PERMANENT_TAGS.has((e as { _tag?: string })?._tag ?? "");

function writeStats(workDir: string, stage: string, instance: string, started: number) {
  try {
    const dir = runPaths(workDir).stats;
    mkdirSync(dir, { recursive: true });
    const u = process.resourceUsage();
    writeFileSync(
      join(dir, `${stage}.${instance}.${process.pid}.json`),
      JSON.stringify({
        stage,
        instance,
        pid: process.pid,
        wallSeconds: (Date.now() - started) / 1000,
        maxRssKiB: u.maxRSS,
        userSeconds: u.userCPUTime / 1e6,
        systemSeconds: u.systemCPUTime / 1e6,
      }),
    );
  } catch {
    // stats are best effort: the work dir may be gone after a cleanup
  }
}

/** Runs a stage process; never returns (exits 0 when done, 1 to be restarted, 2 on a permanent failure). */
export async function runStage(def: StageDefinition): Promise<never> {
  const started = Date.now();
  const env = (k: keyof typeof ENV) => {
    const v = process.env[ENV[k]];
    if (!v) {
      process.stderr.write(`${def.name}: ${ENV[k]} is not set (stages are started by the moeq supervisor)\n`);
      process.exit(2);
    }
    return v;
  };
  // A worker on another host has no work dir: it gets the run's options from RunStarted and a
  // scratch dir of its own, and moves tensors through the object store (HostTensors).
  const remote = !process.env[ENV.workDir];
  const workDir = remote ? mkdtempSync(join(tmpdir(), `moeq-remote-${def.name}-`)) : env("workDir");
  const runId = env("runId");
  const stage = process.env[ENV.stage] ?? def.name;
  const instance = process.env[ENV.instance] ?? "0";
  const say = (line: string) => process.stdout.write(`${new Date().toISOString()} ${stage}.${instance} ${line}\n`);
  // The supervisor's pid comes from the environment, not from our ppid at start: a stage restarted
  // just before its supervisor was killed starts with parent 1 and must not take that as normal.
  // The kernel's death signal (spawnTied) is the fast path; this watch covers where it is missing.
  const parent = Number(process.env[ENV.parentPid] ?? process.ppid);
  const orphaned = () => {
    if (process.ppid === parent) return;
    say("supervisor is gone; exiting");
    process.exit(1);
  };
  orphaned();
  setInterval(orphaned, 500).unref();
  // Long-lived stages (quantizer replicas) end by SIGTERM: their stage span is ended and the
  // buffered spans flushed first, or the trace would lose the parent of every span they made.
  let tel: T.Telemetry | undefined;
  let stageSpan: T.Span | undefined;
  const flushTrace = async () => {
    stageSpan?.end();
    await tel?.shutdown();
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const)
    process.on(sig, () => {
      // stats after the flush, so a run's CPU time includes the export of its last spans
      void flushTrace().finally(() => {
        writeStats(workDir, stage, instance, started);
        process.exit(0);
      });
    });

  let bus: Bus | undefined;
  let log: RunEventLog | undefined;
  // resumes after failures so far: a failure in this attempt gets its own RunFailed id
  let attempt = 0;
  try {
    const hostId = localHostId();
    tel = T.initTelemetry({
      serviceName: stage,
      runId,
      stageVersion: def.version,
      traceFile: process.env[ENV.traceFile] || undefined,
    });
    const localInfo = remote ? undefined : readRunInfo(workDir);
    bus = await connectBus({
      url: env("url"),
      token: process.env[ENV.token],
      name: `${stage}.${instance}@${hostId}`,
      ...clusterOptionsFromEnv(),
    });
    log = await RunEventLog.open(bus, runId);
    const queues = await RunWorkQueues.open(bus, runId);
    // Work items carry the publishing span, so the consumer's span continues it (another process).
    const publishWork = queues.publish.bind(queues);
    queues.publish = (queue, item, o = {}) => publishWork(queue, item, { traceparent: T.currentTraceparent(), ...o });
    const events: Event[] = [];
    const keys = new Set<string>();
    const waiters = new Set<() => void>();
    const startSeq = await log.lastSeq();
    let replayed!: () => void;
    const replay = new Promise<void>((r) => {
      replayed = r;
      if (startSeq === 0) r();
    });
    let lastKnown = startSeq;
    await log.follow(1, (e) => {
      lastKnown = Math.max(lastKnown, e.seq);
      if (e.type === "RunResumed") attempt = e.payload.attempt;
      events.push(e);
      keys.add(eventKey(e));
      if (e.seq >= startSeq) replayed();
      for (const w of [...waiters]) w();
      // Nobody stops a worker on another host: it leaves when the run is over (an end replayed
      // from before a resume is not the run's state now: only the last event at start or a later one).
      if (remote && e.seq >= startSeq && (e.type === "RunCompleted" || e.type === "RunFailed")) {
        say(`run ended (${e.type}); exiting`);
        writeStats(workDir, stage, instance, started);
        process.exit(0);
      }
    });
    await replay;
    const until = (cond: () => boolean) =>
      new Promise<void>((resolve) => {
        if (cond()) return resolve();
        const check = () => {
          if (cond()) {
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    const find = <T extends EventType>(type: T, pred?: (e: EventOf<T>) => boolean) =>
      events.find((e) => e.type === type && (!pred || pred(e as EventOf<T>))) as EventOf<T> | undefined;
    const stageOptions = JSON.parse(process.env[ENV.options] ?? "{}") as Record<string, unknown>;
    const pauseMs = typeof stageOptions.pauseMs === "number" ? stageOptions.pauseMs : 0;
    const theLog = log;
    const info: Pick<RunInfo, "modelDir" | "outDir" | "options"> =
      localInfo ??
      (await until(() => find("RunStarted") !== undefined).then(() => {
        const rs = find("RunStarted")!;
        return { modelDir: rs.payload.modelDir, outDir: "", options: rs.payload.options as unknown as RunOptions };
      }));
    const theBus = bus;
    let host: Promise<HostTensors> | undefined;
    const ctx: StageContext = {
      stage,
      instance,
      runId,
      workDir,
      modelDir: info.modelDir,
      outDir: info.outDir,
      options: info.options,
      stageOptions,
      bus,
      log,
      queues,
      reader: new TensorReader(remote ? [workDir] : [workDir, ...modelRoots(info.modelDir)]),
      paths: runPaths(workDir),
      events,
      hostId,
      remote,
      host: () => {
        host ??= remote
          ? HostTensors.open(theBus, { runId, hostId })
          : Promise.resolve(HostTensors.home(theBus, { runId, hostId, workDir }));
        host.catch(() => {
          host = undefined;
        });
        return host;
      },
      has: (k) => keys.has(k),
      find,
      all: (type, pred) => events.filter((e) => e.type === type && (!pred || pred(e as never))) as never,
      waitFor: async (type, pred) => {
        await until(() => find(type, pred) !== undefined);
        return find(type, pred)!;
      },
      until,
      emit: async (event) => {
        const key = eventKey(event);
        if (keys.has(key)) return;
        const msgId = `${runId}/${key}`;
        // The event's consumers continue the trace of the span that produced it.
        const traceparent = T.currentTraceparent();
        // Appending at the last sequence we know saves the stream-info round trip; when another
        // stage got there first, the log's own retry loop takes over.
        let appended: { seq: number };
        try {
          appended = await theLog.append(stage, event, { msgId, expectedLastSeq: lastKnown, traceparent });
        } catch (e) {
          if ((e as { _tag?: string })._tag !== "AppendConflict") throw e;
          appended = await theLog.append(stage, event, { msgId, traceparent });
        }
        lastKnown = Math.max(lastKnown, appended.seq);
        keys.add(key);
      },
      pause: () => (pauseMs > 0 ? sleep(pauseMs).then(() => undefined) : Promise.resolve()),
      say,
    };
    await log.append(stage, {
      type: "StageStarted",
      payload: { stage, instance, host: hostId, pid: process.pid, version: def.version },
    });
    say(`started (pid ${process.pid})`);
    await ctx.waitFor("RunStarted");
    await T.stageSpan((span) => {
      stageSpan = span;
      return def.run(ctx);
    }).finally(() => {
      stageSpan = undefined;
    });
    say("done");
    await flushTrace();
    writeStats(workDir, stage, instance, started);
    await bus.nc.drain().catch(() => undefined);
    process.exit(0);
  } catch (e) {
    const noSpace = isNoSpaceError(e);
    const permanent = !noSpace && isPermanentError(e);
    say(
      `failed${noSpace ? " (out of disk space: free space, then moeq resume)" : permanent ? " (permanent)" : ""}: ${errorInfo(e).message}`,
    );
    if (e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    try {
      if (log) {
        await log.append(stage, { type: "StageFailed", payload: { stage, instance, error: errorInfo(e) } });
        if (permanent)
          await log.append(
            stage,
            { type: "RunFailed", payload: { stage, error: errorInfo(e) } },
            { msgId: runFailedMsgId(runId, attempt) },
          );
      }
    } catch {
      // the bus is gone too: the supervisor sees the exit code
    }
    await flushTrace();
    writeStats(workDir, stage, instance, started);
    process.exit(noSpace ? EXIT_NO_SPACE : permanent ? 2 : 1);
  }
}

export { StageError };
