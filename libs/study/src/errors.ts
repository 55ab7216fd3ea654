import { Data } from "effect";

/** A study option that cannot be used; `field` names the flag. */
export class StudyOptionsError extends Data.TaggedError("StudyOptionsError")<{
  readonly field: string;
  readonly message: string;
}> {}
