import { Data } from "effect";

/** A quantized result or a checkpoint that a format cannot write or decode; the message names the module/tensor/field. */
export class FormatError extends Data.TaggedError("FormatError")<{ readonly format: string; readonly reason: string }> {
  override get message() {
    return `${this.format}: ${this.reason}`;
  }
}

export class UnknownFormatError extends Data.TaggedError("UnknownFormatError")<{
  readonly name: string;
  readonly valid: readonly string[];
}> {
  override get message() {
    return `unknown checkpoint format "${this.name}"; valid formats: ${this.valid.join(", ")}`;
  }
}
