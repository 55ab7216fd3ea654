// The supervisor: starts (or reconnects to) the run's NATS server, appends RunStarted on a new
// run, spawns the graph's stage processes, follows the events to render progress, restarts
// crashed stages (bounded), appends RunCompleted once the evaluation is in (or RunFailed), then
// stops everything and builds the summary. A resumed run goes through the same path: stages
// replay the events and skip what is done.
import { writeSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import {
  type Bus,
  clusterOptionsFromEnv,
  connectBus,
  type EmbeddedServer,
  RunEventLog,
  RunWorkQueues,
  startNatsServer,
  streamReplicas,
} from "@moeq/bus";
import {
  type Event,
  foldRunState,
  initialRunState,
  type RunState,
  resumableFailure,
  runFailedMsgId,
} from "@moeq/contracts";
import { buildSpec, type RawConfig } from "@moeq/models";
import { ENV, modelRoots, quantTargets, type RunInfo, readRunInfo, runPaths } from "@moeq/runtime";
import { type HostFileServer, localHostId, removeRunSegments, serveHostFiles } from "@moeq/store";
import { initTelemetry, runSpan, traceEnv } from "@moeq/telemetry";
import { moeqVersion } from "../version.ts";
import { resolveGraph } from "./graph.ts";
import { writeModelCard } from "./model-card.ts";
import { StageProcesses } from "./processes.ts";
import { Progress } from "./progress.ts";
import { buildSummary, type RunSummary } from "./summary.ts";

export interface SuperviseOptions {
  readonly workDir: string;
  /** write progress and notes (stdout) */
  readonly write: (s: string) => void;
  readonly tty: boolean;
  readonly maxRestarts?: number;
  /** called with the live process table once stages are spawned (tests use it to kill stages) */
  readonly onStarted?: (p: StageProcesses, log: RunEventLog) => void;
  /** OTLP JSON-lines file the supervisor and every stage process append their spans to */
  readonly traceFile?: string;
}

export const defaultThreads = () => Math.max(1, Math.min(4, cpus().length));

/**
 * Runs the run inside its root span: every stage process gets the span as TRACEPARENT (and the
 * trace file), so the whole run is one trace. Tracing off: the span helpers call straight through.
 */
export async function supervise(o: SuperviseOptions): Promise<RunSummary> {
  const info: RunInfo = readRunInfo(o.workDir);
  const traceFile = o.traceFile ? resolve(o.traceFile) : undefined;
  const tel = initTelemetry({ serviceName: "supervisor", runId: info.runId, stageVersion: moeqVersion, traceFile });
  try {
    return await runSpan(info.runId, () =>
      superviseRun(o, info, { ...traceEnv(), ...(traceFile ? { [ENV.traceFile]: traceFile } : {}) }),
    );
  } finally {
    await tel.shutdown();
  }
}

async function superviseRun(
  o: SuperviseOptions,
  info: RunInfo,
  traceVars: Record<string, string>,
): Promise<RunSummary> {
  const paths = runPaths(o.workDir);
  const started = Date.now();
  let server: EmbeddedServer | undefined;
  let bus: Bus | undefined;
  let procs: StageProcesses | undefined;
  let hostFiles: HostFileServer | undefined;
  const stopSignals = (signal: NodeJS.Signals) => {
    // synchronous: the CLI runtime ends the process on the same signal before a piped write drains
    writeSync(2, `\nmoeq: ${signal}: stopping; continue the run with: moeq resume ${o.workDir}\n`);
    void procs?.stopAll(1000);
  };
  try {
    let url = info.natsUrl;
    let token: string | undefined;
    if (!url) {
      server = await startNatsServer({ baseDir: o.workDir, storeDir: paths.natsStore });
      url = server.url;
      token = server.token;
    }
    bus = await connectBus({ url, token, name: "supervisor", ...(token ? {} : clusterOptionsFromEnv()) });
    const log = await RunEventLog.open(bus, info.runId);
    const queues = await RunWorkQueues.open(bus, info.runId);
    // Workers on other hosts read this host's files (and hand their outputs back) through it.
    hostFiles = await serveHostFiles(bus, {
      runId: info.runId,
      hostId: localHostId(),
      roots: [o.workDir, ...modelRoots(info.modelDir)],
      workDir: o.workDir,
      replicas: streamReplicas(bus.nc),
    });
    // How soon the item of a worker that died (another host, no supervisor to notice) is redone.
    const ackWaitMs = info.stageOptions?.quantizer?.ackWaitMs;
    await queues.ensureQueue("quantize", {
      ackWaitMs: typeof ackWaitMs === "number" && ackWaitMs >= 1000 ? ackWaitMs : 120_000,
      maxDeliver: 5,
    });
    if ((await log.lastSeq()) === 0)
      await log.append(
        "run",
        {
          type: "RunStarted",
          payload: {
            modelDir: info.modelDir,
            options: info.options as unknown as Record<string, unknown>,
            graph: info.graph,
          },
        },
        { msgId: `${info.runId}/RunStarted` },
      );

    // A run that failed because a stage kept dying is continued: RunResumed closes that failure,
    // the work done stands, and only ends after it count. An input error stays the run's end.
    const past = await log.read(1);
    const before = past.reduce(foldRunState, initialRunState);
    const lastFailure = past.findLast((e) => e.type === "RunFailed");
    const resumed =
      before.status === "failed" &&
      lastFailure?.type === "RunFailed" &&
      resumableFailure(lastFailure.payload.error.tag);
    const attempt = resumed ? before.attempt + 1 : before.attempt;
    if (resumed && lastFailure?.type === "RunFailed") {
      const after = { tag: lastFailure.payload.error.tag, message: lastFailure.payload.error.message };
      await log.append(
        "run",
        { type: "RunResumed", payload: { attempt, after } },
        { msgId: `${info.runId}/RunResumed/${attempt}` },
      );
    }
    // ends before the latest RunResumed were that attempt's, not the run's
    const judgedUpTo = resumed ? before.lastSeq : (past.findLast((e) => e.type === "RunResumed")?.seq ?? 0);

    const events: Event[] = [];
    let state: RunState = initialRunState;
    let targetsPerLayer: (L: number) => number = () => 0;
    const progress = new Progress(o.write, o.tty, (L) => targetsPerLayer(L));
    let finish!: () => void;
    const finished = new Promise<void>((r) => {
      finish = r;
    });
    let appendingEnd = false;
    let stopped: string | undefined;
    const follower = await log.follow(1, (e) => {
      events.push(e);
      state = foldRunState(state, e);
      if (e.type === "ModelOpened") {
        const { arch, spec } = buildSpec(e.payload.config as RawConfig, "ModelOpened.config");
        const counts = new Map<number, number>();
        for (const t of quantTargets(arch, spec, info.options.targets))
          counts.set(t.layer, (counts.get(t.layer) ?? 0) + 1);
        targetsPerLayer = (L) => counts.get(L) ?? 0;
      }
      progress.on(e);
      if (e.type === "EvaluationCompleted" && !appendingEnd) {
        appendingEnd = true;
        void log
          .append(
            "run",
            { type: "RunCompleted", payload: { seconds: (Date.now() - started) / 1000 } },
            { msgId: `${info.runId}/RunCompleted` },
          )
          .catch((err) => progress.note(`cannot append RunCompleted: ${(err as Error).message}`));
      }
      if ((e.type === "RunCompleted" || e.type === "RunFailed") && e.seq > judgedUpTo) finish();
    });
    if (resumed) progress.note(`resuming after: ${before.error}`);

    const already = before.status === "completed" || (before.status === "failed" && !resumed);
    if (!already) {
      const stages = resolveGraph(info.graph);
      const giveUp = (stage: string, why: string) => {
        if (appendingEnd) return;
        appendingEnd = true;
        void log
          .append(
            "run",
            { type: "RunFailed", payload: { stage, error: { tag: "StageGaveUp", message: why } } },
            { msgId: runFailedMsgId(info.runId, attempt) },
          )
          .catch(() => finish());
      };
      procs = new StageProcesses(
        stages,
        {
          url,
          token,
          runId: info.runId,
          workDir: o.workDir,
          threads: info.threads ?? defaultThreads(),
          trace: traceVars,
        },
        paths.logs,
        o.maxRestarts ?? 3,
        giveUp,
        (stage, i, why) => progress.note(`stage ${stage}.${i} died (${why}); restarting`),
        (stage, why) => {
          // No RunFailed: the log stays open for `moeq resume` once space is freed.
          const failed = events.findLast((e) => e.type === "StageFailed" && e.payload.stage === stage);
          const message = failed?.type === "StageFailed" ? failed.payload.error.message : why;
          stopped = `${stage} ran out of disk space: ${message}; free space, then \`moeq resume ${o.workDir}\``;
          progress.note(stopped);
          finish();
        },
      );
      // On our own embedded server no worker of this run is alive now (they die with their
      // supervisor): what they held is redone at once rather than after the queue's ack wait.
      if (server) {
        const redone = await queues.redeliverInFlight();
        if (redone > 0) progress.note(`${redone} work item(s) held by the previous processes are redone`);
      }
      // first in line: the CLI runtime's own handler ends the process on these signals
      process.prependListener("SIGINT", stopSignals);
      process.prependListener("SIGTERM", stopSignals);
      procs.startAll();
      o.onStarted?.(procs, log);
    }
    await finished;
    await procs?.stopAll();
    await follower.stop();
    removeRunSegments(info.runId);
    const summary = buildSummary({
      info,
      workDir: o.workDir,
      events,
      state,
      processes: procs ? [...procs.stats.values()] : [],
      wallSeconds: (Date.now() - started) / 1000,
      ...(stopped ? { stopped } : {}),
    });
    writeModelCard(summary, info);
    return summary;
  } finally {
    process.removeListener("SIGINT", stopSignals);
    process.removeListener("SIGTERM", stopSignals);
    await procs?.stopAll(1000);
    await hostFiles?.stop();
    await bus?.nc.drain().catch(() => undefined);
    await server?.stop();
  }
}
