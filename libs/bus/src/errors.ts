import { Data } from "effect";

export class NatsServerFailed extends Data.TaggedError("NatsServerFailed")<{ readonly message: string }> {}

export class NatsConnectFailed extends Data.TaggedError("NatsConnectFailed")<{
  readonly url: string;
  readonly message: string;
}> {}

/** Another writer appended first: `expected` was not the stream's last sequence. */
export class AppendConflict extends Data.TaggedError("AppendConflict")<{
  readonly stream: string;
  readonly expected: number;
  readonly message: string;
}> {}

export class BusFailed extends Data.TaggedError("BusFailed")<{
  readonly operation: string;
  readonly message: string;
}> {}

/**
 * Thrown (or failed with) by a work handler to dead-letter an item at once instead of retrying:
 * the item can never succeed (bad descriptor, wrong size, unknown kind, ...).
 */
export class PermanentFailure extends Data.TaggedError("PermanentFailure")<{
  readonly tag: string;
  readonly message: string;
}> {}

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
