// Per-layer and per-expert error aggregates the pipeline fills while quantizing and evaluating.
import { EvalInputError } from "./errors.ts";

/**
 * Relative Frobenius error ‖q − ref‖ / ‖ref‖ accumulated over batches in f64: the MoE block
 * output of a layer (quantized vs reference on the same inputs), an expert's output on its
 * routed tokens, or an expert's weights.
 */
export class RelativeErrorAccumulator {
  private diff2 = 0;
  private ref2 = 0;
  private count = 0;

  add(ref: Float32Array, q: Float32Array): void {
    if (ref.length !== q.length)
      throw new EvalInputError({ field: "q", reason: `length ${q.length} differs from ref length ${ref.length}` });
    let d2 = 0;
    let r2 = 0;
    for (let i = 0; i < ref.length; i++) {
      const d = q[i] - ref[i];
      d2 += d * d;
      r2 += ref[i] * ref[i];
    }
    if (!Number.isFinite(d2) || !Number.isFinite(r2))
      throw new EvalInputError({ field: "ref/q", reason: "values are not finite" });
    this.diff2 += d2;
    this.ref2 += r2;
    this.count += ref.length;
  }

  merge(other: RelativeErrorAccumulator): void {
    this.diff2 += other.diff2;
    this.ref2 += other.ref2;
    this.count += other.count;
  }

  /** Number of values added. */
  get elements(): number {
    return this.count;
  }

  /** ‖q − ref‖ / ‖ref‖; NaN before anything was added, +∞ for a zero reference with error. */
  get value(): number {
    if (this.count === 0) return Number.NaN;
    if (this.ref2 === 0) return this.diff2 === 0 ? 0 : Number.POSITIVE_INFINITY;
    return Math.sqrt(this.diff2 / this.ref2);
  }
}

export interface LayerStats {
  readonly layer: number;
  /** Relative error of the MoE block output, quantized vs reference on the same inputs. */
  readonly outputRelError: number | null;
  /** Tokens the error was measured on. */
  readonly tokens: number;
}

export interface ExpertStats {
  readonly layer: number;
  readonly expert: number;
  /** Calibration tokens routed to this expert (top-k). */
  readonly routedTokens: number;
  /** Sum of the calibration weights this expert's Hessian/statistics received. */
  readonly calibWeightMass: number;
  /** ‖W_q − W‖ / ‖W‖ over the expert's quantized matrices; null when not quantized. */
  readonly weightRelError: number | null;
  /** Relative output error on its routed evaluation tokens; null when it saw none. */
  readonly outputRelError: number | null;
  /** Wall time spent quantizing this expert. */
  readonly seconds: number;
}

/** layers × experts matrix of one ExpertStats field (null where an expert has no entry). */
export function expertMatrix<K extends keyof ExpertStats>(
  layers: number,
  experts: number,
  stats: readonly ExpertStats[],
  field: K,
): (number | null)[][] {
  const m: (number | null)[][] = Array.from({ length: layers }, () => new Array<number | null>(experts).fill(null));
  for (const s of stats) {
    if (s.layer < 0 || s.layer >= layers || s.expert < 0 || s.expert >= experts)
      throw new EvalInputError({
        field: `expert stats (${s.layer}, ${s.expert})`,
        reason: `outside ${layers} layers × ${experts} experts`,
      });
    m[s.layer][s.expert] = s[field] as number | null;
  }
  return m;
}
