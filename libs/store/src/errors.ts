import { Data } from "effect";

export type RejectReason =
  | "outside-roots" // a file path that resolves outside the run's allowed roots
  | "foreign-segment" // an shm segment of another run
  | "past-end" // offset + bytes beyond the file or segment
  | "wrong-size" // bytes != ceil(prod(shape) * bits(dtype) / 8)
  | "missing" // the file, segment or object does not exist
  | "unsupported"; // a location this build cannot open (cuda without the CUDA build)

/** A descriptor that can never be opened; `permanent` makes work queues dead-letter it at once. */
export class DescriptorRejected extends Data.TaggedError("DescriptorRejected")<{
  readonly reason: RejectReason;
  readonly source: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

export class ChecksumMismatch extends Data.TaggedError("ChecksumMismatch")<{
  readonly source: string;
  readonly expected: string;
  readonly actual: string;
  readonly message: string;
}> {
  readonly permanent = true;
}

export class StoreFailed extends Data.TaggedError("StoreFailed")<{
  readonly operation: string;
  readonly message: string;
}> {}
