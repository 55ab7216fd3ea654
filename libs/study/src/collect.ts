// One forward pass per calibration size, statistics for every policy at once. With
// full-precision propagation a layer's input does not depend on how the previous layers were
// quantized, so the layer's MoE input x is computed once for all policies. Per layer and expert, each policy's Hessians are built exactly as the calibrator builds
// them (its used rows in token order through the expert, the policy weights,
// native.hessianAccumulate, f32), timed per policy (its statistics cost), and quantized right
// away (GPTQ as the quantizer calls it, RTN where the policy gives no token), so only the
// quantized results are kept.
import { extractRoleMatrix, type LoadedModel, type Routing, tensorToF32 } from "@moeq/models";
import { native } from "@moeq/native";
import { gptq, type IntQuantResult, quantizeIntRtn } from "@moeq/quant";
import { type IntOutputs, type QuantTarget, quantTargets, targetKey, tokenWindows } from "@moeq/runtime";
import { scaleDtypeFor } from "@moeq/stage-quantizer";
import { type CalibrationPolicy, type Coverage, checkWeights, coverage } from "@moeq/stage-router-override";

export interface QuantSettings {
  readonly algorithm: "gptq" | "rtn";
  readonly bits: number;
  readonly groupSize: number;
  readonly symmetric: boolean;
  readonly damp: number;
  readonly actOrder: boolean;
}

export interface PolicyRun {
  readonly policy: string;
  /** quantized expert projections by tensor name (what the quantizer stage writes) */
  readonly modules: Map<string, IntOutputs>;
  /** per MoE layer (index = layer; dense layers are absent) */
  readonly coverage: Map<number, Coverage[]>;
  /** tensors quantized with RTN because the policy gave their expert no token */
  readonly rtnFallbacks: string[];
  /** the policy's statistics cost over all MoE layers: its weights, then per expert the forward
   *  of its rows and both Hessians (GPTQ excluded); rows = Σ over experts of the rows it uses */
  readonly statistics: { seconds: number; rows: number };
}

export interface CollectInput {
  readonly model: LoadedModel;
  readonly calib: string;
  readonly seed: number;
  readonly batchWindows: number;
  readonly cacheDir?: string;
  readonly policies: readonly CalibrationPolicy[];
  readonly quant: QuantSettings;
  readonly log?: (line: string) => void;
}

function gatherRows(x: Float32Array, cols: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * cols);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(rows[i] * cols, (rows[i] + 1) * cols), i * cols);
  return out;
}

async function weightedHessian(x: Float32Array, n: number, cols: number, w: Float32Array): Promise<Float32Array> {
  const acc = new Float64Array(cols * cols);
  if (n > 0) await native.hessianAccumulate(acc, x, n, cols, w);
  return Float32Array.from(acc);
}

const outputsOf = (r: IntQuantResult): IntOutputs => ({
  codes: r.codes,
  scales: r.scales,
  zeros: r.zeros,
  gIdx: r.gIdx,
});

export function expertTargets(model: LoadedModel): QuantTarget[] {
  return quantTargets(model.arch, model.spec, "experts");
}

/** As the quantizer stage: scales rounded to the dtype compressed-tensors stores them in (the weight's). */
export const scaleDtypeOf = (model: LoadedModel, t: QuantTarget) =>
  scaleDtypeFor("compressed-tensors", model.source.tensor(t.tensor).dtype);

export function rtnQuantize(model: LoadedModel, w: Float32Array, t: QuantTarget, q: QuantSettings): IntQuantResult {
  return quantizeIntRtn(w, t.rows, t.cols, {
    bits: q.bits,
    groupSize: q.groupSize,
    symmetric: q.symmetric,
    clip: "minmax",
    scaleDtype: scaleDtypeOf(model, t),
    name: t.tensor,
  });
}

let lastWhole: { model: LoadedModel; tensor: string; f32: Float32Array; shape: readonly number[] } | undefined;

/** The target's [rows, cols] weight in f32; experts of fused tensors are cut out of it (the
 *  decoded whole tensor is kept while consecutive experts read from it). */
export function loadWeight(model: LoadedModel, t: QuantTarget): Float32Array {
  if (!t.extracted) return Float32Array.from(tensorToF32(model.source.tensor(t.tensor), t.tensor));
  if (lastWhole?.model !== model || lastWhole.tensor !== t.tensor) {
    const whole = model.source.tensor(t.tensor);
    lastWhole = { model, tensor: t.tensor, f32: tensorToF32(whole, t.tensor), shape: whole.shape };
  }
  return extractRoleMatrix(t.role, lastWhole.f32, lastWhole.shape);
}

export async function collectAndQuantize(c: CollectInput): Promise<{ runs: PolicyRun[]; tokens: number }> {
  const { model } = c;
  const spec = model.spec;
  const H = spec.hiddenSize;
  const targets = expertTargets(model);
  const windows = await tokenWindows(c.calib, "calib", {
    modelDir: model.dir,
    vocab: spec.vocabSize,
    seed: c.seed,
    ...(c.cacheDir ? { cacheDir: c.cacheDir } : {}),
  });
  const { n: N, seqLen: T } = windows;
  const rows = N * T;
  const batch = Math.min(c.batchWindows, N);
  const runs: PolicyRun[] = c.policies.map((p) => ({
    policy: p.name,
    modules: new Map(),
    coverage: new Map(),
    rtnFallbacks: [],
    statistics: { seconds: 0, rows: 0 },
  }));
  const engine = model.engine({ cacheBytes: 2 ** 30 });
  let h = engine.embed(windows.ids, engine.sequences(N, T));
  for (let L = 0; L < spec.layers.length; L++) {
    const t0 = Date.now();
    const residual = new Float32Array(rows * H);
    const x = new Float32Array(rows * H);
    for (let b0 = 0; b0 < N; b0 += batch) {
      const nb = Math.min(batch, N - b0);
      const a = await engine.attention(L, h.subarray(b0 * T * H, (b0 + nb) * T * H), engine.sequences(nb, T));
      residual.set(a.residual, b0 * T * H);
      x.set(a.x, b0 * T * H);
    }
    const m = spec.layers[L].mlp;
    let y: Float32Array;
    if (m.kind === "moe") {
      const routing = await engine.router(L, x);
      await calibrateLayer(
        c,
        engine,
        L,
        x,
        routing,
        m.weightScalesInput ? inputScoresOf(routing) : null,
        m.routing,
        targets.filter((t) => t.layer === L),
        runs,
      );
      y = await engine.moe(L, x, routing);
    } else {
      y = new Float32Array(rows * H);
      for (let r0 = 0; r0 < rows; r0 += batch * T) {
        const nr = Math.min(batch * T, rows - r0);
        y.set((await engine.mlp(L, x.subarray(r0 * H, (r0 + nr) * H))).out, r0 * H);
      }
    }
    h = engine.finishLayer(residual, y);
    c.log?.(
      `${c.calib}: layer ${L} done in ${((Date.now() - t0) / 1000).toFixed(1)} s (${c.policies.length} policies)`,
    );
  }
  return { runs, tokens: rows };
}

/** Llama 4 (the routing weight σ(z) scales the expert input): σ(z) of every logit, the weight each
 *  expert would get for each token were it selected — the calibrator's routerInputScores. */
function inputScoresOf(routing: Routing): Float32Array {
  const s = new Float32Array(routing.logits.length);
  native.activationF32("sigmoid", routing.logits, s);
  return s;
}

/** Scales the gathered rows as the MoE block scales expert e's input: the real combine weight
 *  where the token is routed to e, its score where only a calibration policy adds it. */
function scaleRows(
  xe: Float32Array,
  H: number,
  rows: readonly number[],
  routing: Routing,
  scores: Float32Array,
  e: number,
): void {
  const { numExperts: E, topK: k, indices, weights } = routing;
  rows.forEach((t, i) => {
    let s = scores[t * E + e];
    for (let j = 0; j < k; j++) if (indices[t * k + j] === e) s = weights[t * k + j];
    for (let c = 0; c < H; c++) xe[i * H + c] = Math.fround(xe[i * H + c] * s);
  });
}

async function calibrateLayer(
  c: CollectInput,
  engine: ReturnType<LoadedModel["engine"]>,
  L: number,
  x: Float32Array,
  routing: Routing,
  inputScores: Float32Array | null,
  routingSpec: Parameters<CalibrationPolicy["weights"]>[1]["spec"],
  targets: readonly QuantTarget[],
  runs: PolicyRun[],
) {
  const { model, quant: q } = c;
  const H = model.spec.hiddenSize;
  const E = routing.numExperts;
  const rows = routing.rows;
  const calibs: Float32Array[] = [];
  for (let i = 0; i < c.policies.length; i++) {
    const p = c.policies[i];
    const tPolicy = performance.now();
    const w = checkWeights(
      await p.weights(routing, { layer: L, spec: routingSpec, hiddenSize: H }),
      routing,
      `policy ${p.name} (layer ${L})`,
    );
    runs[i].statistics.seconds += (performance.now() - tPolicy) / 1000;
    calibs.push(w);
    runs[i].coverage.set(L, coverage(routing, w));
  }
  for (let e = 0; e < E; e++) {
    const et = targets.filter((t) => t.expert === e);
    if (et.length === 0) continue;
    const weights = new Map(et.map((t) => [targetKey(t), loadWeight(model, t)]));
    for (let i = 0; i < c.policies.length; i++) {
      const cw = calibs[i];
      const run = runs[i];
      // the policy's rows in token order, forwarded and accumulated on their own, as the
      // calibrator does: the time and rows are this policy's statistics cost
      const tStats = performance.now();
      const used: number[] = [];
      for (let t = 0; t < rows; t++) if (cw[t * E + e] > 0) used.push(t);
      if (used.length === 0 || q.algorithm === "rtn") {
        for (const t of et) {
          run.modules.set(targetKey(t), outputsOf(rtnQuantize(model, weights.get(targetKey(t))!, t, q)));
          if (q.algorithm === "gptq") run.rtnFallbacks.push(t.tensor);
        }
        continue;
      }
      const xe = gatherRows(x, H, used);
      if (inputScores) scaleRows(xe, H, used, routing, inputScores, e);
      const act = (await engine.expert(L, e, xe)).act;
      const I = act.length / used.length;
      const w = Float32Array.from(used, (t) => cw[t * E + e]);
      const mass = w.reduce((s, v) => s + v, 0);
      const hIn = await weightedHessian(xe, used.length, H, w);
      const hDown = await weightedHessian(act, used.length, I, w);
      run.statistics.seconds += (performance.now() - tStats) / 1000;
      run.statistics.rows += used.length;
      for (const t of et) {
        const res = await gptq(weights.get(targetKey(t))!, t.rows, t.cols, t.proj === "down_proj" ? hDown : hIn, {
          bits: q.bits,
          groupSize: q.groupSize,
          symmetric: q.symmetric,
          actOrder: q.actOrder,
          damp: q.damp,
          hessianWeight: mass,
          scaleDtype: scaleDtypeOf(model, t),
          name: t.tensor,
        });
        run.modules.set(targetKey(t), outputsOf(res));
      }
    }
  }
}
