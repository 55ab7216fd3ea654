// Children that must not outlive the process that started them, however it dies (SIGKILL
// included, when no exit handler runs). On Linux the kernel sends such a child a signal when its
// parent exits (PR_SET_PDEATHSIG); Node cannot set it between fork and exec, so util-linux's
// `setpriv --pdeathsig` does, then execs the command (same pid, same argv for `ps`). Where setpriv
// is missing (not Linux, a minimal image) the child starts plainly and only the owner's own
// cleanup and the child's own watch of its parent (stages: `MOEQ_PARENT_PID`) remain.
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";

let setprivPath: string | null | undefined;

/** `name` as the first executable on PATH (or itself when it has a slash), null when absent. */
function executable(name: string, extra: readonly string[] = []): string | null {
  const candidates = name.includes("/")
    ? [name]
    : [...(process.env.PATH ?? "").split(":").filter(Boolean), ...extra].map((d) => `${d}/${name}`);
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {}
  }
  return null;
}

function setpriv(): string | null {
  if (setprivPath === undefined)
    setprivPath = process.platform === "linux" ? executable("setpriv", ["/usr/bin", "/bin"]) : null;
  return setprivPath;
}

/** True when children started by `spawnTied` die with this process (the kernel delivers it). */
export const tiedChildrenSupported = (): boolean => setpriv() !== null;

/**
 * `spawn(command, args, options)` whose child gets `signal` as soon as this process exits.
 * SIGTERM lets a nats-server or a stage shut down in order; the owner's own SIGKILL fallback stays.
 */
export function spawnTied(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
  signal: "SIGTERM" | "SIGKILL" = "SIGTERM",
): ChildProcess {
  const sp = setpriv();
  // a command that cannot be run is spawned plainly, so the caller sees spawn's own ENOENT error
  const resolved = executable(command);
  if (!sp || !resolved) return spawn(command, args, options);
  return spawn(sp, ["--pdeathsig", signal.slice(3), "--", resolved, ...args], options);
}
