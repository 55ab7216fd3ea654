import { Data } from "effect";

/**
 * A calibration policy that cannot be used or did not answer correctly. `source` names what was
 * wrong: the option (`--policy`), the external process, or the file it wrote.
 */
export class PolicyError extends Data.TaggedError("PolicyError")<{
  readonly source: string;
  readonly message: string;
}> {
  /** a bad policy is not fixed by restarting the stage */
  readonly permanent = true;
}
