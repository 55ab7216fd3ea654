// No process of a run outlives its supervisor: SIGKILL the supervisor at random moments, including
// 0.3 s after killing a stage (the supervisor restarts it after 0.2 s, so the new stage starts
// while its parent dies), and within 5 s every stage, restarted stage and the embedded nats-server
// must be gone (ps, by pid and start time, so a reused pid is not mistaken for ours).
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { moeq, moeqSpawn, root, shardHashes, synthTiny, tempDir, waitForLog } from "./helpers.ts";

const dir = tempDir("lifetime");
const model = join(dir, "model");
const windows = ["--calib", "random:16x64", "--eval", "random:4x64"];

/** pid → start time (clock ticks since boot) of every live process */
function processTable(): Map<number, { ppid: number; start: string }> {
  const t = new Map<number, { ppid: number; start: string }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (f[0] === "Z") continue;
      t.set(Number(d), { ppid: Number(f[1]), start: f[19] });
    } catch {}
  }
  return t;
}

/** Adds every live descendant of `root` to `seen` (pid → start time). */
function collectDescendants(rootPid: number, seen: Map<number, string>): void {
  const t = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, p] of t) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  const todo = [rootPid];
  while (todo.length) {
    const p = todo.pop()!;
    for (const c of children.get(p) ?? []) {
      seen.set(c, t.get(c)!.start);
      todo.push(c);
    }
  }
}

function survivors(seen: Map<number, string>): number[] {
  const t = processTable();
  return [...seen].filter(([pid, start]) => t.get(pid)?.start === start).map(([pid]) => pid);
}

function pausedGraph(file: string): string {
  const stages = ["loader", "router-override", "calibrator", "quantizer", "packer", "evaluator"].map((name) => ({
    name,
    manifest: join(root, "stages", name, "manifest.json"),
    replicas: 1,
    options: { pauseMs: 150 },
  }));
  writeFileSync(file, JSON.stringify({ version: 1, stages }, null, 2));
  return file;
}

/** `moeq quantize` of the tiny model into `dir/name` through a graph that pauses every stage's items. */
const pausedRun = (name: string) =>
  moeqSpawn([
    "quantize",
    model,
    "--out",
    join(dir, name),
    ...windows,
    "--graph",
    pausedGraph(join(dir, `${name}.json`)),
  ]);

/** Starts a run, keeps a census of its process tree, and SIGKILLs the supervisor when `trigger` resolves. */
async function killSupervisor(name: string, trigger: (work: string) => Promise<void>): Promise<number[]> {
  const out = join(dir, name);
  const work = `${out}.moeq-work`;
  const run = pausedRun(name);
  const supervisor = run.child.pid!;
  const seen = new Map<number, string>();
  const census = setInterval(() => collectDescendants(supervisor, seen), 20);
  try {
    await trigger(work);
    collectDescendants(supervisor, seen);
    run.child.kill("SIGKILL");
    await run.done;
  } finally {
    clearInterval(census);
  }
  // the run had stages and its nats-server
  expect(seen.size).toBeGreaterThanOrEqual(3);
  const deadline = Date.now() + 5000;
  while (survivors(seen).length > 0 && Date.now() < deadline) await sleep(100);
  return survivors(seen);
}

beforeAll(async () => {
  await synthTiny(model, { seed: 3 });
}, 120_000);

describe("process lifetime", () => {
  it("a stage killed 0.3 s before the supervisor: its restart and everything else are gone within 5 s", async () => {
    const left = await killSupervisor("restart", async (work) => {
      const pid = await waitForLog(work, "calibrator", /layer 0 done/);
      process.kill(pid, "SIGKILL");
      await sleep(300);
    });
    expect(left).toEqual([]);
  }, 120_000);

  it("the supervisor killed at random moments of a run: nothing of the run survives 5 s", async () => {
    for (const [i, delayMs] of [300 + Math.random() * 700, 1000 + Math.random() * 2000].entries()) {
      const left = await killSupervisor(`random-${i}`, async (work) => {
        await waitForLog(work, "loader", /started/);
        await sleep(delayMs);
      });
      expect(left, `killed after ${Math.round(delayMs)} ms`).toEqual([]);
    }
  }, 120_000);

  it("SIGINT and SIGTERM stop a run with the shell's codes (130, 143) and say how to resume it", async () => {
    for (const [signal, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
    ] as const) {
      const out = join(dir, `signal-${signal}`);
      const work = `${out}.moeq-work`;
      const run = pausedRun(`signal-${signal}`);
      await waitForLog(work, "loader", /started/);
      run.child.kill(signal);
      const r = await run.done;
      // the shell's view: 128 + the signal number, whether the process exits with it or dies by it
      expect(r.signal ? signal : r.code, r.stderr).toBe(r.signal ? signal : code);
      expect(r.stderr).toContain(`moeq resume ${work}`);
    }
  }, 120_000);

  it("a run that failed because a stage kept dying is continued by moeq resume, byte-identical to an undisturbed run", async () => {
    const base = await moeq(["quantize", model, "--out", join(dir, "undisturbed"), ...windows]);
    expect(base.code, base.stderr).toBe(0);
    const out = join(dir, "gave-up");
    const work = `${out}.moeq-work`;
    const run = pausedRun("gave-up");
    // the supervisor restarts a stage 3 times, then gives up: kill the quantizer 4 times
    let last = 0;
    for (let k = 0; k < 4; k++) {
      let pid = last;
      while (pid === last) pid = await waitForLog(work, "quantizer", /consuming quantize work/);
      process.kill(pid, "SIGKILL");
      last = pid;
    }
    const failed = await run.done;
    expect(failed.code).not.toBe(0);
    expect(failed.stdout + failed.stderr).toMatch(/quantizer\.0 died 4 times/);
    const r = await moeq(["resume", work, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { status: string }).status, r.stderr).toBe("completed");
    expect(shardHashes(out)).toEqual(shardHashes(join(dir, "undisturbed")));
    // a completed run resumed again stays completed
    const again = await moeq(["resume", work, "--json"]);
    expect((JSON.parse(again.stdout) as { status: string }).status).toBe("completed");
  }, 180_000);
});
