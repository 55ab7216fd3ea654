// Where one quantizable [out, in] matrix sits inside the tensor that stores it — a fused expert
// tensor (gate/up halves or GPT-OSS interleaving, possibly stored transposed), DBRX's row-stacked
// [E·I, H] experts, or a row range of a fused projection (DBRX Wqkv) — and the way back, so the
// quantizer sees per-expert matrices in Linear orientation and the packer can re-fuse them
// byte for byte or write them under per-expert module names.
import type { Tensor } from "@moeq/tensor";
import { ModelWeightError } from "../errors.ts";
import type { ExpertLayout, ModelSpec, WeightRole } from "../spec.ts";
import { tensorToF32, type WeightSource } from "../weights.ts";

type Stacked = Extract<ExpertLayout, { kind: "stacked" }>;

export function stackedExpertRoles(layout: Stacked, layer: number, e: number, I: number, H: number): WeightRole[] {
  const base = { layer, expert: e, module: "experts" as const };
  const f = (transposed: boolean) => ({ expertAxis: 0 as const, rows: "all" as const, transposed, stacked: true });
  return [
    { ...base, tensor: layout.gate, projection: "gate_proj", shape: [I, H], fused: f(false) },
    { ...base, tensor: layout.up, projection: "up_proj", shape: [I, H], fused: f(false) },
    { ...base, tensor: layout.down, projection: "down_proj", shape: [H, I], fused: f(layout.downTransposed) },
  ];
}

/** Adds rowSlice to the roles of attention projections that are row ranges of a fused tensor. */
export function withRowSlices(spec: ModelSpec, roles: WeightRole[]): WeightRole[] {
  const slices = new Map<string, { start: number; totalRows: number }>();
  for (const L of spec.layers) {
    const a = L.attention;
    if (a.kind !== "standard") continue;
    for (const [l, p] of [
      [a.q, "q_proj"],
      [a.k, "k_proj"],
      [a.v, "v_proj"],
      [a.o, "o_proj"],
    ] as const)
      if (l.rowSlice) slices.set(`${L.index}:${p}:${l.weight}`, l.rowSlice);
  }
  if (slices.size === 0) return roles;
  return roles.map((r) => {
    const s = r.expert === null ? slices.get(`${r.layer}:${r.projection}:${r.tensor}`) : undefined;
    return s ? { ...r, rowSlice: s } : r;
  });
}

type Elems = Float32Array | Uint16Array | Uint8Array;

/**
 * Element index (into the whole tensor) of entry [o, i] of the role's [out, in] matrix, as a
 * function, after checking the tensor's shape against the role.
 */
function locator(role: WeightRole, shape: readonly number[]): (o: number, i: number) => number {
  const [out, inn] = role.shape;
  const bad = (why: string): never => {
    throw new ModelWeightError({
      tensor: role.tensor,
      message: `tensor '${role.tensor}' has shape [${shape}]; ${why} (layer ${role.layer}, expert ${role.expert}, ${role.projection} [${out}, ${inn}])`,
    });
  };
  if (role.rowSlice) {
    const { start, totalRows } = role.rowSlice;
    if (shape.length !== 2 || shape[0] !== totalRows || shape[1] !== inn || start + out > totalRows)
      bad(`expected [${totalRows}, ${inn}] holding rows ${start}..${start + out - 1}`);
    return (o, i) => (start + o) * inn + i;
  }
  const f = role.fused;
  if (!f) {
    if (shape.length !== 2 || shape[0] !== out || shape[1] !== inn) bad(`expected [${out}, ${inn}]`);
    return (o, i) => o * inn + i;
  }
  const e = role.expert ?? bad("a fused role needs an expert index");
  let E: number;
  let a: number;
  let b: number;
  if (f.stacked) {
    if (shape.length !== 2) bad("expected a 2-D stacked [E·n, m] tensor");
    b = shape[1];
    a = f.transposed ? inn : out;
    E = shape[0] / a;
    if (!Number.isInteger(E)) bad(`rows are not a multiple of ${a}`);
  } else {
    if (shape.length !== 3) bad("expected a 3-D fused [E, ·, ·] tensor");
    [E, a, b] = shape as [number, number, number];
  }
  if (e < 0 || e >= E) bad(`expert ${e} is out of range`);
  // in the per-expert block [a, b], the selected output lines are rows (stored [out', in]) or
  // columns (stored transposed [in, out'])
  const lines = f.transposed ? b : a;
  const inner = f.transposed ? a : b;
  if (inner !== inn) bad(`the input dim of each expert is ${inner}, not ${inn}`);
  const sel = f.rows;
  const want = sel === "all" ? lines : lines / 2;
  if (want !== out) bad(`selecting '${sel}' of ${lines} lines gives ${want}, not ${out}`);
  const line =
    sel === "all" || sel === "first_half"
      ? (o: number) => o
      : sel === "second_half"
        ? (o: number) => out + o
        : sel === "even"
          ? (o: number) => 2 * o
          : (o: number) => 2 * o + 1;
  const base = e * a * b;
  return f.transposed ? (o, i) => base + i * b + line(o) : (o, i) => base + line(o) * b + i;
}

/** The role's [out, in] matrix copied out of the whole tensor's elements (any element type). */
export function extractRoleMatrix<T extends Elems>(role: WeightRole, tensor: T, shape: readonly number[]): T {
  const at = locator(role, shape);
  const [out, inn] = role.shape;
  checkLength(role, tensor, shape);
  const m = new (tensor.constructor as new (n: number) => T)(out * inn);
  for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) m[o * inn + i] = tensor[at(o, i)];
  return m;
}

/** Writes an [out, in] matrix back where the role sits in the whole tensor (the inverse of extractRoleMatrix). */
export function insertRoleMatrix<T extends Elems>(role: WeightRole, tensor: T, shape: readonly number[], m: T): void {
  const at = locator(role, shape);
  const [out, inn] = role.shape;
  checkLength(role, tensor, shape);
  if (m.length !== out * inn)
    throw new ModelWeightError({
      tensor: role.tensor,
      message: `tensor '${role.tensor}': a ${role.projection} matrix of ${m.length} values does not fit [${out}, ${inn}]`,
    });
  for (let o = 0; o < out; o++) for (let i = 0; i < inn; i++) tensor[at(o, i)] = m[o * inn + i];
}

function checkLength(role: WeightRole, tensor: Elems, shape: readonly number[]) {
  const n = shape.reduce((x, y) => x * y, 1);
  if (tensor.length !== n)
    throw new ModelWeightError({
      tensor: role.tensor,
      message: `tensor '${role.tensor}' has ${tensor.length} elements, its shape [${shape}] needs ${n}`,
    });
}

/** Where the packer writes a role: a module (tensor name without ".weight") and the rows it fills. */
export interface PackTarget {
  /** e.g. "model.layers.3.feed_forward.experts.5.gate_proj", or "…attn.Wqkv" for a row slice */
  readonly module: string;
  readonly rowOffset: number;
  readonly rows: number;
}

/**
 * Fused experts go under the per-expert names of the layout's `packedAs` (what serving engines
 * load quantized experts under; for GPT-OSS, "<…>.experts.E.{gate,up,down}_proj" is also what the
 * gpt-oss-mxfp4 format re-fuses into *_blocks/*_scales). Row slices keep their fused module.
 */
export function packTarget(spec: ModelSpec, role: WeightRole): PackTarget {
  const mod = (t: string) => (t.endsWith(".weight") ? t.slice(0, -".weight".length) : t);
  if (role.rowSlice) return { module: mod(role.tensor), rowOffset: role.rowSlice.start, rows: role.shape[0] };
  if (!role.fused || role.expert === null) return { module: mod(role.tensor), rowOffset: 0, rows: role.shape[0] };
  const m = spec.layers[role.layer]?.mlp;
  const layout = m?.kind === "moe" ? m.experts.layout : undefined;
  const names = layout && layout.kind !== "per_expert" ? layout.packedAs : undefined;
  if (!names)
    throw new ModelWeightError({
      tensor: role.tensor,
      message: `tensor '${role.tensor}': layer ${role.layer}'s fused experts declare no per-expert module names (packedAs)`,
    });
  const p = role.projection === "gate_proj" ? names.gate : role.projection === "up_proj" ? names.up : names.down;
  return { module: `${names.prefix}.${role.expert}.${p}`, rowOffset: 0, rows: role.shape[0] };
}

/**
 * The way back for an evaluator: f32 copies of the fused tensors (from `base`) with every role's
 * matrix replaced by the one stored under its packer module (`matrix(module)`, [rows, in]; for a
 * row slice, the whole fused module). Roles whose module `matrix` does not know keep the base values.
 */
export function refuseModules(
  spec: ModelSpec,
  roles: readonly WeightRole[],
  base: WeightSource,
  matrix: (module: string) => Float32Array | undefined,
): Map<string, Tensor> {
  const out = new Map<string, { t: Tensor; f: Float32Array }>();
  for (const r of roles) {
    if (!r.fused && !r.rowSlice) continue;
    const target = packTarget(spec, r);
    const m = matrix(target.module);
    if (!m) continue;
    let slot = out.get(r.tensor);
    if (!slot) {
      const src = base.tensor(r.tensor);
      const f = tensorToF32(src, r.tensor).slice();
      slot = { t: { dtype: "F32", shape: [...src.shape], data: new Uint8Array(f.buffer) }, f };
      out.set(r.tensor, slot);
    }
    const [rows, inn] = r.shape;
    const part = r.rowSlice ? m.subarray(target.rowOffset * inn, (target.rowOffset + rows) * inn) : m;
    insertRoleMatrix(r, slot.f, slot.t.shape, part);
  }
  return new Map([...out].map(([k, v]) => [k, v.t]));
}
