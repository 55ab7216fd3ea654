import { Data } from "effect";

/** The bytes are not a msgpack value. */
export class MalformedMessage extends Data.TaggedError("MalformedMessage")<{
  readonly source: string;
  readonly message: string;
}> {}

/** Valid msgpack that does not match the schema; `message` lists the failing paths. */
export class InvalidMessage extends Data.TaggedError("InvalidMessage")<{
  readonly source: string;
  readonly schema: string;
  readonly message: string;
}> {}
