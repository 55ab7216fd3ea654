// Every failure of reading or writing safetensors: the message names the file and, when one is
// at fault, the tensor, so a user can find the broken input without a stack trace.
import { Data } from "effect";

export class SafetensorsError extends Data.TaggedError("SafetensorsError")<{
  readonly file: string;
  readonly tensor?: string;
  readonly reason: string;
}> {
  override get message() {
    return `${this.file}${this.tensor !== undefined ? ` (tensor "${this.tensor}")` : ""}: ${this.reason}`;
  }
}
