// KL-divergence statistics of a quantized model against its reference, as llama.cpp's
// `llama-perplexity --kl-divergence` reports them (tools/perplexity/perplexity.cpp):
//  - per token, with p = softmax(reference logits), q = softmax(quantized logits):
//    KLD = Σ_i p_i (ln p_i − ln q_i); same top = argmax p == argmax q (first index on ties);
//    with a target token t: nll = −ln q_t, nll_base = −ln p_t, Δp = q_t − p_t;
//  - mean ± uncertainty of a quantity x over n tokens: mean = Σx/n,
//    σ = sqrt((Σx²/n − mean²)/(n−1)), reported as 0 when n ≤ 10 or the variance is ≤ 0;
//  - PPL = exp(mean nll) ± PPL·σ(nll); Cov(nll, nll_base) = (Σ nll·nll_base/n − mean·mean_base)/(n−1)
//    (0 when n < 10); ln(PPL(Q)/PPL(base)) ± sqrt(σ² + σ_base² − 2·Cov); the ratio ± ratio·that;
//    PPL(Q)−PPL(base) ± sqrt(u² + u_base² − 2·PPL·PPL_base·Cov);
//  - RMS Δp = sqrt(mean Δp²) ± σ(Δp²)/(2·RMS); same-top rate p ± sqrt(p(1−p)/(n−1));
//  - percentiles of the sorted per-token values, linear interpolation at f·(n−1); the median
//    is the mean of the two middle values for even n.
// Differences from llama.cpp, on purpose: log-softmax and sums are in f64 over the whole
// vocabulary (llama.cpp stores the base as 16-bit log-probs and drops p < e^−16), and the
// per-token values are kept in f64.
import { EvalInputError } from "./errors.ts";

export interface ValueWithUncertainty {
  readonly value: number;
  readonly uncertainty: number;
}

export interface PerplexityStats {
  /** PPL(Q): the quantized model. */
  readonly ppl: ValueWithUncertainty;
  /** PPL(base): the reference model. */
  readonly pplBase: ValueWithUncertainty;
  /** Cor(ln PPL(Q), ln PPL(base)), in [−1, 1]. */
  readonly lnPplCorrelation: number;
  readonly lnPplRatio: ValueWithUncertainty;
  readonly pplRatio: ValueWithUncertainty;
  readonly pplDiff: ValueWithUncertainty;
}

export interface KldDistribution {
  readonly mean: number;
  readonly uncertainty: number;
  readonly max: number;
  readonly p99_9: number;
  readonly p99: number;
  readonly p95: number;
  readonly p90: number;
  readonly median: number;
  readonly p10: number;
  readonly p5: number;
  readonly p1: number;
  readonly p0_1: number;
  readonly min: number;
}

export interface DeltaPStats extends KldDistribution {
  readonly p75: number;
  readonly p25: number;
  readonly rms: number;
  readonly rmsUncertainty: number;
}

/** Histogram of per-token KLD on log10 bins (KLD spans many decades). */
export interface KldHistogram {
  /** Bin edges in log10(KLD); counts[i] is the number of tokens in [edges[i], edges[i+1]). */
  readonly log10Edges: number[];
  readonly counts: number[];
  /** Tokens whose KLD is below 10^log10Edges[0] (including exact zeros); not in counts. */
  readonly below: number;
}

/** Plain JSON: what `finish()` returns and report.json stores. */
export interface KldStats {
  /** Tokens scored. */
  readonly tokens: number;
  /** Null when no targets were given (KLD only). */
  readonly perplexity: PerplexityStats | null;
  readonly kld: KldDistribution;
  /** Null when no targets were given. */
  readonly deltaP: DeltaPStats | null;
  readonly sameTop: ValueWithUncertainty;
  readonly kldHistogram: KldHistogram;
}

/** mean ± uncertainty from Σx, Σx² over n values, exactly as llama.cpp gates it. */
export function meanAndUncertainty(sum: number, sum2: number, n: number): ValueWithUncertainty {
  if (n < 1) return { value: 0, uncertainty: 0 };
  const mean = sum / n;
  const variance = sum2 / n - mean * mean;
  return { value: mean, uncertainty: variance > 0 && n > 10 ? Math.sqrt(variance / (n - 1)) : 0 };
}

/** Covariance of the means of two quantities, as llama.cpp computes it (0 below 10 values). */
export function meanCovariance(sumA: number, sumB: number, sumAB: number, n: number): number {
  if (n < 10) return 0;
  return (sumAB / n - (sumA / n) * (sumB / n)) / (n - 1);
}

/** Linear interpolation at fraction·(n−1) of ascending `sorted`. */
export function percentileSorted(sorted: ArrayLike<number>, fraction: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (fraction <= 0) return sorted[0];
  if (fraction >= 1) return sorted[n - 1];
  const pos = fraction * (n - 1);
  const i = Math.floor(pos);
  const t = pos - i;
  return (1 - t) * sorted[i] + t * sorted[Math.min(i + 1, n - 1)];
}

function medianSorted(sorted: ArrayLike<number>): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 0 ? 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) : sorted[(n - 1) / 2];
}

/** Growable f64 buffer: the accumulator keeps every per-token value for the percentiles. */
class Float64Growable {
  private data = new Float64Array(1024);
  length = 0;
  push(x: number) {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = x;
  }
  pushAll(other: Float64Growable) {
    for (let i = 0; i < other.length; i++) this.push(other.data[i]);
  }
  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }
}

interface RowScore {
  /** ln Σ exp(logit) of each row, in f64. */
  readonly refLogSumExp: number;
  readonly qLogSumExp: number;
  /** First index of the largest logit. */
  readonly refArgmax: number;
  readonly qArgmax: number;
  readonly kld: number;
}

// KLD = Σ p_i (ln p_i − ln q_i) = Σ p_i (r_i − q_i) − (lse_r − lse_q) because Σ p_i = 1, so one
// pass of exponentials per row suffices; every sum is f64.
function scoreRow(ref: Float32Array, q: Float32Array, base: number, vocab: number): RowScore {
  let maxR = ref[base];
  let maxQ = q[base];
  let refArgmax = 0;
  let qArgmax = 0;
  for (let i = 1; i < vocab; i++) {
    const a = ref[base + i];
    const b = q[base + i];
    if (a > maxR) {
      maxR = a;
      refArgmax = i;
    }
    if (b > maxQ) {
      maxQ = b;
      qArgmax = i;
    }
  }
  let sumR = 0;
  let sumQ = 0;
  let weighted = 0;
  for (let i = 0; i < vocab; i++) {
    const a = ref[base + i];
    const b = q[base + i];
    const e = Math.exp(a - maxR);
    sumR += e;
    sumQ += Math.exp(b - maxQ);
    // e = 0 (a −∞ reference logit) contributes nothing; 0·(−∞) would poison the sum.
    if (e > 0) weighted += e * (a - b);
  }
  const refLogSumExp = maxR + Math.log(sumR);
  const qLogSumExp = maxQ + Math.log(sumQ);
  return { refLogSumExp, qLogSumExp, refArgmax, qArgmax, kld: weighted / sumR - (refLogSumExp - qLogSumExp) };
}

const HISTOGRAM_LOW = -6;
const HISTOGRAM_BINS_PER_DECADE = 4;

function kldHistogram(sorted: Float64Array): KldHistogram {
  const top =
    sorted.length > 0
      ? Math.max(HISTOGRAM_LOW + 1, Math.ceil(Math.log10(Math.max(sorted[sorted.length - 1], 1e-300)) + 1e-12))
      : 0;
  const bins = (top - HISTOGRAM_LOW) * HISTOGRAM_BINS_PER_DECADE;
  const log10Edges = Array.from({ length: bins + 1 }, (_, i) => HISTOGRAM_LOW + i / HISTOGRAM_BINS_PER_DECADE);
  const counts = new Array<number>(bins).fill(0);
  let below = 0;
  for (const x of sorted) {
    const l = x > 0 ? Math.log10(x) : Number.NEGATIVE_INFINITY;
    if (l < HISTOGRAM_LOW) below++;
    else counts[Math.min(bins - 1, Math.floor((l - HISTOGRAM_LOW) * HISTOGRAM_BINS_PER_DECADE))]++;
  }
  return { log10Edges, counts, below };
}

function distribution(sorted: Float64Array, mean: ValueWithUncertainty): KldDistribution {
  return {
    mean: mean.value,
    uncertainty: mean.uncertainty,
    max: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
    p99_9: percentileSorted(sorted, 0.999),
    p99: percentileSorted(sorted, 0.99),
    p95: percentileSorted(sorted, 0.95),
    p90: percentileSorted(sorted, 0.9),
    median: medianSorted(sorted),
    p10: percentileSorted(sorted, 0.1),
    p5: percentileSorted(sorted, 0.05),
    p1: percentileSorted(sorted, 0.01),
    p0_1: percentileSorted(sorted, 0.001),
    min: sorted.length ? sorted[0] : Number.NaN,
  };
}

/** Per-token values of scored rows: all the accumulator keeps of a token (what workers send home). */
export interface TokenScores {
  readonly kld: Float64Array;
  /** 1 where argmax p == argmax q */
  readonly sameTop: Uint8Array;
  /** −ln q_t and −ln p_t of each row's target; null when scored without targets */
  readonly nll: Float64Array | null;
  readonly nllBase: Float64Array | null;
}

/** Scores rows of [rows, vocab] logits; throws EvalInputError (naming the argument) on mismatched or non-finite input. */
export function scoreTokens(
  refLogits: Float32Array,
  qLogits: Float32Array,
  vocab: number,
  targets: Int32Array | null,
): TokenScores {
  if (!Number.isSafeInteger(vocab) || vocab < 1)
    throw new EvalInputError({ field: "vocab", reason: `must be a positive integer, got ${vocab}` });
  if (refLogits.length !== qLogits.length)
    throw new EvalInputError({
      field: "qLogits",
      reason: `length ${qLogits.length} differs from refLogits length ${refLogits.length}`,
    });
  if (refLogits.length % vocab !== 0)
    throw new EvalInputError({
      field: "refLogits",
      reason: `length ${refLogits.length} is not a multiple of vocab ${vocab}`,
    });
  const rows = refLogits.length / vocab;
  if (targets !== null) {
    if (targets.length !== rows)
      throw new EvalInputError({
        field: "targets",
        reason: `length ${targets.length}, expected one per row (${rows})`,
      });
    for (let r = 0; r < rows; r++)
      if (targets[r] < 0 || targets[r] >= vocab)
        throw new EvalInputError({ field: `targets[${r}]`, reason: `token id ${targets[r]} outside [0, ${vocab})` });
  }
  const kld = new Float64Array(rows);
  const sameTop = new Uint8Array(rows);
  const nll = targets === null ? null : new Float64Array(rows);
  const nllBase = targets === null ? null : new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    const row = scoreRow(refLogits, qLogits, base, vocab);
    if (!Number.isFinite(row.refLogSumExp))
      throw new EvalInputError({ field: `refLogits row ${r}`, reason: "not finite" });
    if (!Number.isFinite(row.qLogSumExp)) throw new EvalInputError({ field: `qLogits row ${r}`, reason: "not finite" });
    kld[r] = row.kld;
    sameTop[r] = row.refArgmax === row.qArgmax ? 1 : 0;
    if (targets !== null && nll && nllBase) {
      const t = targets[r];
      nll[r] = row.qLogSumExp - qLogits[base + t];
      nllBase[r] = row.refLogSumExp - refLogits[base + t];
    }
  }
  return { kld, sameTop, nll, nllBase };
}

/**
 * Streaming KLD / PPL / Δp accumulator over rows of [T, V] logits. Feed the reference and the
 * quantized model's logits of the same tokens; `targets[i]` is the token that follows row i
 * (already shifted: the id row i should predict), or null to score KLD and same-top only
 * (then PPL and Δp are null). All `add` calls must agree on whether targets are given.
 */
export class KldAccumulator {
  private n = 0;
  private withTargets: boolean | undefined;
  private sumNll = 0;
  private sumNll2 = 0;
  private sumNllBase = 0;
  private sumNllBase2 = 0;
  private sumNllNllBase = 0;
  private sumKld = 0;
  private sumKld2 = 0;
  private sumDp = 0;
  private sumDp2 = 0;
  private sumDp4 = 0;
  private sameTop = 0;
  private readonly kldValues = new Float64Growable();
  private readonly dpValues = new Float64Growable();

  get tokens(): number {
    return this.n;
  }

  /** Score rows; throws EvalInputError (naming the argument) on mismatched or non-finite input. */
  add(refLogits: Float32Array, qLogits: Float32Array, vocab: number, targets: Int32Array | null): void {
    this.addScores(scoreTokens(refLogits, qLogits, vocab, targets));
  }

  /**
   * Adds tokens scored elsewhere (`scoreTokens`, e.g. by an evaluator worker on another host).
   * Each token goes through the same f64 sums in the same order as `add`, so feeding a run's
   * batches in order gives bit-identical statistics wherever they were scored.
   */
  addScores(s: TokenScores): void {
    const rows = s.kld.length;
    const hasTargets = s.nll !== null;
    if (s.sameTop.length !== rows)
      throw new EvalInputError({ field: "scores.sameTop", reason: `length ${s.sameTop.length}, expected ${rows}` });
    if (hasTargets !== (s.nllBase !== null) || (s.nll && s.nll.length !== rows) || (s.nllBase && s.nllBase.length !== rows))
      throw new EvalInputError({ field: "scores.nll", reason: `nll and nllBase must both be null or both hold ${rows} values` });
    if (this.withTargets !== undefined && this.withTargets !== hasTargets)
      throw new EvalInputError({ field: "targets", reason: "given in some add() calls and null in others" });
    for (let r = 0; r < rows; r++) {
      const kld = s.kld[r];
      this.sumKld += kld;
      this.sumKld2 += kld * kld;
      this.kldValues.push(kld);
      if (s.sameTop[r] === 1) this.sameTop++;
      if (s.nll !== null && s.nllBase !== null) {
        const nll = s.nll[r];
        const nllBase = s.nllBase[r];
        this.sumNll += nll;
        this.sumNll2 += nll * nll;
        this.sumNllBase += nllBase;
        this.sumNllBase2 += nllBase * nllBase;
        this.sumNllNllBase += nll * nllBase;
        const dp = Math.exp(-nll) - Math.exp(-nllBase);
        const dp2 = dp * dp;
        this.sumDp += dp;
        this.sumDp2 += dp2;
        this.sumDp4 += dp2 * dp2;
        this.dpValues.push(dp);
      }
      this.n++;
    }
    this.withTargets = hasTargets;
  }

  /** Fold another accumulator's tokens into this one (e.g. from parallel workers). */
  merge(other: KldAccumulator): void {
    if (other.n === 0) return;
    if (this.withTargets !== undefined && other.withTargets !== this.withTargets)
      throw new EvalInputError({ field: "targets", reason: "cannot merge accumulators with and without targets" });
    this.withTargets = other.withTargets;
    this.n += other.n;
    this.sumNll += other.sumNll;
    this.sumNll2 += other.sumNll2;
    this.sumNllBase += other.sumNllBase;
    this.sumNllBase2 += other.sumNllBase2;
    this.sumNllNllBase += other.sumNllNllBase;
    this.sumKld += other.sumKld;
    this.sumKld2 += other.sumKld2;
    this.sumDp += other.sumDp;
    this.sumDp2 += other.sumDp2;
    this.sumDp4 += other.sumDp4;
    this.sameTop += other.sameTop;
    this.kldValues.pushAll(other.kldValues);
    this.dpValues.pushAll(other.dpValues);
  }

  finish(): KldStats {
    const n = this.n;
    if (n === 0) throw new EvalInputError({ field: "KldAccumulator", reason: "no tokens were added" });
    const kldSorted = this.kldValues.sorted();
    const kld = distribution(kldSorted, meanAndUncertainty(this.sumKld, this.sumKld2, n));
    const sameTopRate = this.sameTop / n;
    const sameTop = {
      value: sameTopRate,
      uncertainty: n > 1 ? Math.sqrt((sameTopRate * (1 - sameTopRate)) / (n - 1)) : 0,
    };
    let perplexity: PerplexityStats | null = null;
    let deltaP: DeltaPStats | null = null;
    if (this.withTargets) {
      const lnPpl = meanAndUncertainty(this.sumNll, this.sumNll2, n);
      const lnPplBase = meanAndUncertainty(this.sumNllBase, this.sumNllBase2, n);
      const cov = meanCovariance(this.sumNll, this.sumNllBase, this.sumNllNllBase, n);
      const ppl = Math.exp(lnPpl.value);
      const pplBase = Math.exp(lnPplBase.value);
      const pplUnc = ppl * lnPpl.uncertainty;
      const pplBaseUnc = pplBase * lnPplBase.uncertainty;
      const lnRatio = lnPpl.value - lnPplBase.value;
      const lnRatioUnc = Math.sqrt(Math.max(0, lnPpl.uncertainty ** 2 + lnPplBase.uncertainty ** 2 - 2 * cov));
      const denom = lnPpl.uncertainty * lnPplBase.uncertainty;
      perplexity = {
        ppl: { value: ppl, uncertainty: pplUnc },
        pplBase: { value: pplBase, uncertainty: pplBaseUnc },
        lnPplCorrelation: denom > 0 ? cov / denom : Number.NaN,
        lnPplRatio: { value: lnRatio, uncertainty: lnRatioUnc },
        pplRatio: { value: Math.exp(lnRatio), uncertainty: Math.exp(lnRatio) * lnRatioUnc },
        pplDiff: {
          value: ppl - pplBase,
          uncertainty: Math.sqrt(Math.max(0, pplUnc ** 2 + pplBaseUnc ** 2 - 2 * ppl * pplBase * cov)),
        },
      };
      const dpSorted = this.dpValues.sorted();
      const mse = meanAndUncertainty(this.sumDp2, this.sumDp4, n);
      const rms = Math.sqrt(mse.value);
      deltaP = {
        ...distribution(dpSorted, meanAndUncertainty(this.sumDp, this.sumDp2, n)),
        p75: percentileSorted(dpSorted, 0.75),
        p25: percentileSorted(dpSorted, 0.25),
        rms,
        rmsUncertainty: rms > 0 ? (0.5 / rms) * mse.uncertainty : 0,
      };
    }
    return { tokens: n, perplexity, kld, deltaP, sameTop, kldHistogram: kldHistogram(kldSorted) };
  }
}
