import type { Event } from "./events.ts";

export interface RunState {
  readonly runId: string | undefined;
  readonly status: "new" | "running" | "completed" | "failed";
  readonly lastSeq: number;
  readonly modelDir: string | undefined;
  readonly arch: string | undefined;
  readonly layers: number;
  readonly stages: Readonly<Record<string, "started" | "failed">>;
  readonly layersLoaded: ReadonlyArray<number>;
  readonly layersCompleted: ReadonlyArray<number>;
  /** `layer/expert/proj` keys, sorted, deduplicated: redone work does not count twice. */
  readonly quantized: ReadonlyArray<string>;
  readonly calibrated: ReadonlyArray<string>;
  readonly shards: Readonly<Record<string, string>>;
  readonly checkpoint: string | undefined;
  readonly error: string | undefined;
  /** RunResumed events so far: each attempt after a failure has its own RunFailed message id */
  readonly attempt: number;
}

export const initialRunState: RunState = {
  runId: undefined,
  status: "new",
  attempt: 0,
  lastSeq: 0,
  modelDir: undefined,
  arch: undefined,
  layers: 0,
  stages: {},
  layersLoaded: [],
  layersCompleted: [],
  quantized: [],
  calibrated: [],
  shards: {},
  checkpoint: undefined,
  error: undefined,
};

const addSorted = <T>(xs: ReadonlyArray<T>, x: T): ReadonlyArray<T> =>
  xs.includes(x) ? xs : [...xs, x].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** Pure reducer: replaying a run's stream from the start reproduces the live state exactly. */
export function foldRunState(s: RunState, e: Event): RunState {
  const base = { ...s, runId: e.runId, lastSeq: e.seq };
  switch (e.type) {
    case "RunStarted":
      return { ...base, status: "running", modelDir: e.payload.modelDir };
    case "StageStarted":
      return { ...base, stages: { ...s.stages, [e.payload.stage]: "started" } };
    case "StageFailed":
      return { ...base, stages: { ...s.stages, [e.payload.stage]: "failed" } };
    case "ModelOpened":
      return { ...base, arch: e.payload.arch, layers: e.payload.layers };
    case "LayerLoaded":
      return { ...base, layersLoaded: addSorted(s.layersLoaded, e.payload.layer) };
    case "ExpertCalibrated":
      return {
        ...base,
        calibrated: addSorted(s.calibrated, `${e.payload.layer}/${e.payload.expert}/${e.payload.proj}`),
      };
    case "ExpertQuantized":
      return { ...base, quantized: addSorted(s.quantized, `${e.payload.layer}/${e.payload.expert}/${e.payload.proj}`) };
    case "LayerCompleted":
      return { ...base, layersCompleted: addSorted(s.layersCompleted, e.payload.layer) };
    case "ShardWritten":
      return { ...base, shards: { ...s.shards, [e.payload.file]: e.payload.sha256 } };
    case "CheckpointPacked":
      return { ...base, checkpoint: e.payload.dir };
    case "RunCompleted":
      return { ...base, status: "completed" };
    case "RunFailed":
      return { ...base, status: "failed", error: `${e.payload.stage}: ${e.payload.error.message}` };
    case "RunResumed":
      return { ...base, status: "running", error: undefined, attempt: e.payload.attempt };
    default:
      return base;
  }
}

/** The message id of the run's RunFailed in its current attempt (a resumed run can fail again). */
export const runFailedMsgId = (runId: string, attempt: number): string =>
  attempt === 0 ? `${runId}/RunFailed` : `${runId}/RunFailed/${attempt}`;

/** Failures `moeq resume` may continue after: the supervisor gave up on a stage that kept dying. */
export const resumableFailure = (tag: string): boolean => tag === "StageGaveUp";
