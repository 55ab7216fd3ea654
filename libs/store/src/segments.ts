// Names and lifetimes of a run's shm segments: moeq-<runId>-<pid>.<n>, plus an owner marker
// moeq-<runId>.run holding the owning process's pid and start time. A segment whose run has no
// live owner is stale and is swept (by the next run's start, or by anyone calling sweep).
import { readdirSync, readFileSync } from "node:fs";
import { isRunId } from "@moeq/contracts";
import { native } from "@moeq/native";

const SHM_DIR = "/dev/shm";
const SEGMENT = /^moeq-([A-Za-z0-9_-]{1,64})-(\d+\.\d+)$/;
const MARKER = /^moeq-([A-Za-z0-9_-]{1,64})\.run$/;

let counter = 0;
export const newSegmentName = (runId: string) => `moeq-${runId}-${process.pid}.${counter++}`;
export const markerName = (runId: string) => `moeq-${runId}.run`;
export const segmentPrefix = (runId: string) => `moeq-${runId}-`;

/** The run a segment name belongs to, or undefined if it is not a moeq segment name. */
export const segmentRun = (name: string): string | undefined => SEGMENT.exec(name)?.[1];

// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. Together with the pid it
// identifies a process even after the pid is reused.
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

interface Owner {
  pid: number;
  start: string;
}

function readOwner(runId: string): Owner | undefined {
  try {
    const o = JSON.parse(readFileSync(`${SHM_DIR}/${markerName(runId)}`, "utf8")) as Owner;
    return typeof o.pid === "number" && typeof o.start === "string" ? o : undefined;
  } catch {
    return undefined;
  }
}

const ownerAlive = (o: Owner | undefined) => o !== undefined && processStart(o.pid) === o.start;

/** Marks this process as the owner of the run's segments (call once when the run starts). */
export function claimRun(runId: string): void {
  if (!isRunId(runId)) throw new TypeError(`invalid run id '${runId}'`);
  const existing = readOwner(runId);
  if (existing && ownerAlive(existing) && existing.pid !== process.pid)
    throw new Error(`run ${runId} is owned by live process ${existing.pid}`);
  native.shmUnlink(markerName(runId));
  const bytes = Buffer.from(JSON.stringify({ pid: process.pid, start: processStart(process.pid) }));
  new Uint8Array(native.shmCreate(markerName(runId), bytes.length)).set(bytes);
}

export function listSegments(): string[] {
  try {
    return readdirSync(SHM_DIR).filter((n) => n.startsWith("moeq-"));
  } catch {
    return [];
  }
}

/** Removes every segment of the run and its owner marker. Returns the names removed. */
export function removeRunSegments(runId: string): string[] {
  const removed: string[] = [];
  for (const n of listSegments())
    if (segmentRun(n) === runId || n === markerName(runId)) if (native.shmUnlink(n)) removed.push(n);
  return removed;
}

/** Removes the segments of every run whose owner is gone (or that never had one). */
export function sweepStaleSegments(): string[] {
  const runs = new Set<string>();
  for (const n of listSegments()) {
    const r = segmentRun(n) ?? MARKER.exec(n)?.[1];
    if (r) runs.add(r);
  }
  const removed: string[] = [];
  for (const r of runs) if (!ownerAlive(readOwner(r))) removed.push(...removeRunSegments(r));
  return removed;
}
