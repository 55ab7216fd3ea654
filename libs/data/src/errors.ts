// Typed failures of the data library. Every message names the file, spec or field at fault so
// a CLI user can fix the input without reading a stack trace.
import { Data } from "effect";

/** tokenizer.json / tokenizer_config.json missing, unreadable or not a usable tokenizer. */
export class TokenizerLoadError extends Data.TaggedError("TokenizerLoadError")<{
  readonly path: string;
  readonly reason: string;
}> {
  override get message() {
    return `cannot load tokenizer ${this.path}: ${this.reason}`;
  }
}

/** A `--calib` / `--eval` spec that does not parse. */
export class CalibSpecError extends Data.TaggedError("CalibSpecError")<{
  readonly spec: string;
  readonly reason: string;
}> {
  override get message() {
    return `bad calibration spec "${this.spec}": ${this.reason}`;
  }
}

/** A text source (corpus file, .txt, .jsonl) that cannot be read or has bad content. */
export class TextSourceError extends Data.TaggedError("TextSourceError")<{
  readonly path: string;
  /** 1-based line number for .jsonl records; absent for whole-file problems. */
  readonly line?: number;
  readonly reason: string;
}> {
  override get message() {
    return `${this.path}${this.line === undefined ? "" : `:${this.line}`}: ${this.reason}`;
  }
}

/** The selected text has fewer tokens than the requested N×T windows need. */
export class NotEnoughTokensError extends Data.TaggedError("NotEnoughTokensError")<{
  readonly source: string;
  readonly available: number;
  readonly needed: number;
}> {
  override get message() {
    return `${this.source} tokenizes to ${this.available} tokens, fewer than the ${this.needed} the requested windows need`;
  }
}

export type DataError = TokenizerLoadError | CalibSpecError | TextSourceError | NotEnoughTokensError;
