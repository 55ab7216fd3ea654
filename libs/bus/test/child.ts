import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface Child {
  readonly proc: ChildProcess;
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first JSON line (already seen or future) matching pred. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(sig?: NodeJS.Signals): Promise<void>;
}

export function spawnNode(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: Record<string, unknown>[] = [];
  const waiters: Array<{
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  let stderr = "";
  proc.stderr!.on("data", (b) => {
    stderr += b.toString();
  });
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    let l: Record<string, unknown>;
    try {
      l = JSON.parse(line);
    } catch {
      return;
    }
    lines.push(l);
    for (const w of [...waiters])
      if (w.pred(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return {
    proc,
    lines,
    waitFor: (pred, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const hit = lines.find(pred);
        if (hit) return resolve(hit);
        const t = setTimeout(
          () => reject(new Error(`timeout waiting for child output; stderr: ${stderr.slice(-2000)}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      }),
    kill: async (sig = "SIGTERM") => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
      await exited;
    },
  };
}
