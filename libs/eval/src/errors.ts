// Typed failures of the evaluation library; messages name the argument or field at fault.
import { Data } from "effect";

/** Logits / targets handed to an accumulator that do not fit together or are not finite. */
export class EvalInputError extends Data.TaggedError("EvalInputError")<{
  readonly field: string;
  readonly reason: string;
}> {
  override get message() {
    return `${this.field}: ${this.reason}`;
  }
}

/** ReportData whose matrices or fields do not match the model's layers × experts. */
export class ReportDataError extends Data.TaggedError("ReportDataError")<{
  readonly field: string;
  readonly reason: string;
}> {
  override get message() {
    return `report data ${this.field}: ${this.reason}`;
  }
}

/** report.json / report.html could not be written. */
export class ReportWriteError extends Data.TaggedError("ReportWriteError")<{
  readonly path: string;
  readonly reason: string;
}> {
  override get message() {
    return `cannot write report to ${this.path}: ${this.reason}`;
  }
}
