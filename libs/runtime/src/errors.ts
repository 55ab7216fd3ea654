import { Data } from "effect";

/** A run option (CLI flag, graph option, run.json field) that cannot be used; names the field. */
export class OptionsError extends Data.TaggedError("OptionsError")<{
  readonly field: string;
  readonly message: string;
}> {}

/** The work dir / run.json is missing, unreadable or not a moeq run. */
export class RunDirError extends Data.TaggedError("RunDirError")<{
  readonly path: string;
  readonly message: string;
}> {}

/** A stage could not do its job; `permanent` stops the run instead of restarting the stage. */
export class StageError extends Data.TaggedError("StageError")<{
  readonly stage: string;
  readonly message: string;
  readonly permanent?: boolean;
}> {}

/** A tensor descriptor this runtime cannot open (kind, size, roots). */
export class TensorFileError extends Data.TaggedError("TensorFileError")<{
  readonly source: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

/** Exit status of a stage that ran out of disk space: the supervisor stops the run (no RunFailed),
 *  so `moeq resume` continues once space is freed. */
export const EXIT_NO_SPACE = 3;

/** True for a failed write on a full filesystem (ENOSPC), however wrapped (code, message or cause). */
export function isNoSpaceError(e: unknown): boolean {
  for (let x = e, depth = 0; x && depth < 8; x = (x as { cause?: unknown }).cause, depth++) {
    if ((x as { code?: unknown }).code === "ENOSPC") return true;
    const m = (x as { message?: unknown }).message;
    if (typeof m === "string" && /ENOSPC|no space left on device/i.test(m)) return true;
  }
  return false;
}
