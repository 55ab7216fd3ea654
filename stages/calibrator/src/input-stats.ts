// Statistics of the inputs the engine really multiplies, gathered through its linear hook: per
// quantize target, the weighted Hessian sum S = Σ_t w_t·x_t·x_tᵀ (GPTQ), the tokens and weight
// mass behind it and the input absmax (static activation scales). Targets fed the same input
// (q/k/v, gate/up, MLA q_a/kv_a...) share one accumulator, so a layer holds one k×k sum per
// distinct input, not per projection. The hook only copies; `flush()` accumulates (off the event
// loop), so one engine call's inputs are held at a time.
import type { LinearCall, LinearHook } from "@moeq/models";
import type { DeviceKernels } from "@moeq/native";
import { type QuantTarget, targetKey } from "@moeq/runtime";

/** The hook call that carries a target's input: a fused gate_up tensor is one call, labelled gate_proj. */
export function callKeyOfTarget(t: QuantTarget): string {
  const r = t.role;
  const projection = r.fused && !r.fused.stacked && r.projection === "up_proj" ? "gate_proj" : r.projection;
  return callKey({ layer: r.layer, expert: r.expert, weight: r.tensor, projection });
}

const callKey = (c: Pick<LinearCall, "layer" | "expert" | "weight" | "projection">) =>
  `${c.layer}|${c.expert ?? "-"}|${c.weight}|${c.projection}`;

export interface InputStats {
  /** k×k f32 sum Σ w·x·xᵀ; empty when only ranges were gathered */
  readonly hessian: Float32Array;
  readonly cols: number;
  readonly tokens: number;
  readonly weightMass: number;
  readonly absmax: number;
  /** targets whose input this is (same group → same statistics) */
  readonly group: string;
}

interface Group {
  readonly cols: number;
  readonly h: Float64Array | null;
  tokens: number;
  mass: number;
  absmax: number;
}

interface Captured {
  readonly x: Float32Array;
  readonly rows: number;
  readonly cols: number;
  readonly w: Float32Array | null;
  readonly keys: Set<string>;
}

export class InputStatistics {
  private readonly byCall = new Map<string, QuantTarget[]>();
  private readonly groups = new Map<string, Group>();
  private captured: Captured[] = [];
  private readonly seen = new Map<Float32Array, Captured[]>();
  /** per-row weights of the rows the next engine call runs (null: weight 1 per token) */
  rowWeights: Float32Array | null = null;

  constructor(
    targets: readonly QuantTarget[],
    private readonly kernels: DeviceKernels,
    /** false: input ranges only (RTN needs no Hessian) */
    private readonly hessians: boolean,
  ) {
    for (const t of targets) {
      const k = callKeyOfTarget(t);
      this.byCall.set(k, [...(this.byCall.get(k) ?? []), t]);
    }
  }

  readonly hook: LinearHook = (call, x, rows, cols) => {
    const ts = this.byCall.get(callKey(call));
    if (!ts || rows === 0) return x;
    // the same buffer with the same values → the same input (shared by several projections)
    let c = this.seen.get(x)?.find((s) => s.cols === cols && s.w === this.rowWeights && sameValues(s.x, x));
    if (!c) {
      c = { x: x.slice(), rows, cols, w: this.rowWeights, keys: new Set() };
      this.seen.set(x, [...(this.seen.get(x) ?? []), c]);
      this.captured.push(c);
    }
    for (const t of ts) c.keys.add(targetKey(t));
    return x;
  };

  /** Accumulates what the hook captured since the last flush. */
  async flush(): Promise<void> {
    const todo = this.captured;
    this.captured = [];
    this.seen.clear();
    for (const c of todo) {
      const id = [...c.keys].sort().join(",");
      let g = this.groups.get(id);
      if (!g) {
        g = {
          cols: c.cols,
          h: this.hessians ? new Float64Array(c.cols * c.cols) : null,
          tokens: 0,
          mass: 0,
          absmax: 0,
        };
        this.groups.set(id, g);
      }
      if (g.h) await this.kernels.hessianAccumulate(g.h, c.x, c.rows, c.cols, c.w);
      g.tokens += c.rows;
      if (c.w) for (let i = 0; i < c.rows; i++) g.mass += c.w[i];
      else g.mass += c.rows;
      let m = g.absmax;
      for (let i = 0; i < c.x.length; i++) m = Math.max(m, Math.abs(c.x[i]));
      g.absmax = m;
    }
  }

  private readonly results = new Map<string, InputStats>();

  /** The statistics of a target's input (one object per shared input); undefined when no captured call fed it. */
  stats(t: QuantTarget): InputStats | undefined {
    const key = targetKey(t);
    const cached = [...this.results.values()].find((r) => r.group.split(",").includes(key));
    if (cached) return cached;
    // a target normally sits in one group; if calls grouped it differently over batches, sum them
    const mine = [...this.groups].filter(([id]) => id.split(",").includes(key));
    if (mine.length === 0) return undefined;
    const [id, first] = mine[0];
    const h = first.h ? new Float32Array(first.cols * first.cols) : new Float32Array(0);
    let tokens = 0;
    let mass = 0;
    let absmax = 0;
    for (const [, g] of mine) {
      if (g.cols !== first.cols) throw new Error(`${key}: inputs of ${g.cols} and ${first.cols} columns`);
      if (g.h) for (let i = 0; i < h.length; i++) h[i] += g.h[i];
      tokens += g.tokens;
      mass += g.mass;
      absmax = Math.max(absmax, g.absmax);
    }
    const r = { hessian: h, cols: first.cols, tokens, weightMass: mass, absmax, group: mine.length === 1 ? id : key };
    this.results.set(r.group, r);
    return r;
  }
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}
