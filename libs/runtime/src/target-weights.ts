// Targets whose matrix is part of a larger checkpoint tensor (fused / stacked experts, DBRX's
// Wqkv row slices): the calibrator cuts each [rows, cols] matrix out once, in Linear orientation
// and the source dtype, so a quantizer (possibly on another host) reads only its matrix; the
// packer and --propagate quantized put the results back under the modules packTarget names.
import type { TensorDescriptor } from "@moeq/contracts";
import { extractRoleMatrix } from "@moeq/models";
import { StageError } from "./errors.ts";
import type { IntOutputs } from "./quantized.ts";
import type { QuantTarget } from "./targets.ts";
import { type TensorReader, writeTensorFile } from "./tensors.ts";

type Elems = Float32Array | Uint16Array | Uint8Array;

function elements(bytes: Uint8Array, dtype: string, source: string): Elems {
  const size =
    dtype === "f32" ? 4 : dtype === "bf16" || dtype === "f16" ? 2 : dtype === "u8" || dtype.startsWith("f8") ? 1 : 0;
  if (size === 0)
    throw new StageError({
      stage: "calibrator",
      message: `${source}: cannot cut a matrix out of a ${dtype} tensor`,
      permanent: true,
    });
  const b = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  return size === 4
    ? new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)
    : size === 2
      ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2)
      : b;
}

/**
 * The descriptor the quantizer should read for `t`: `d` itself for a whole-tensor target, else a
 * new file `<dir>/L<l>.E<e>.<proj>.weight` with the extracted matrix. `cache` keeps each fused
 * tensor's mapping for the targets that share it.
 */
export function targetWeight(
  reader: TensorReader,
  dir: string,
  t: QuantTarget,
  d: TensorDescriptor | undefined,
  cache: Map<string, Elems>,
): TensorDescriptor | undefined {
  if (!d || !t.extracted) return d;
  let all = cache.get(t.tensor);
  if (!all) {
    all = elements(reader.bytes(d, t.tensor), d.dtype, t.tensor);
    cache.set(t.tensor, all);
  }
  let m: Elems;
  try {
    m = extractRoleMatrix(t.role, all, d.shape);
  } catch (e) {
    throw new StageError({ stage: "calibrator", message: (e as Error).message, permanent: true });
  }
  return writeTensorFile(
    dir,
    `L${t.layer}.E${t.expert}.${t.proj.replace(/[^\w.-]/g, "_")}.weight`,
    d.dtype,
    [t.rows, t.cols],
    m,
  );
}

export interface PackedModule {
  readonly module: string;
  readonly rows: number;
  readonly cols: number;
  readonly q: IntOutputs;
  readonly targets: readonly QuantTarget[];
}

/**
 * Quantizer outputs grouped by packed module: one target per module, or the row slices of a
 * fused projection stacked back in row order (they must cover it and share one column → group map).
 */
export function packedModules(
  targets: readonly QuantTarget[],
  outputs: (t: QuantTarget) => IntOutputs,
): PackedModule[] {
  const groups = new Map<string, QuantTarget[]>();
  for (const t of targets) {
    const g = groups.get(t.packed.module);
    if (g) g.push(t);
    else groups.set(t.packed.module, [t]);
  }
  const out: PackedModule[] = [];
  for (const [module, ts] of groups) {
    if (ts.length === 1 && ts[0].packed.rowOffset === 0 && !ts[0].role.rowSlice) {
      out.push({ module, rows: ts[0].rows, cols: ts[0].cols, q: outputs(ts[0]), targets: ts });
      continue;
    }
    const sorted = [...ts].sort((a, b) => a.packed.rowOffset - b.packed.rowOffset);
    const cols = sorted[0].cols;
    const total = sorted[0].role.rowSlice?.totalRows ?? sorted.reduce((s, t) => s + t.rows, 0);
    const bad = (why: string): never => {
      throw new StageError({ stage: "packer", message: `module ${module}: ${why}`, permanent: true });
    };
    let next = 0;
    for (const t of sorted) {
      if (t.cols !== cols) bad(`${t.proj} has ${t.cols} columns, not ${cols}`);
      if (t.packed.rowOffset !== next) bad(`rows ${next}..${t.packed.rowOffset - 1} are not quantized by any target`);
      next += t.rows;
    }
    if (next !== total) bad(`its targets cover ${next} of ${total} rows`);
    const parts = sorted.map(outputs);
    const nG = parts[0].scales.length / sorted[0].rows;
    const q = {
      codes: new Uint8Array(total * cols),
      scales: new Float32Array(total * nG),
      zeros: new Int32Array(total * nG),
      gIdx: parts[0].gIdx,
    };
    parts.forEach((p, i) => {
      const t = sorted[i];
      if (p.scales.length !== t.rows * nG || p.gIdx.some((g, c) => g !== q.gIdx[c]))
        bad(`${t.proj} does not share the group layout of ${sorted[0].proj}`);
      q.codes.set(p.codes, t.packed.rowOffset * cols);
      q.scales.set(p.scales, t.packed.rowOffset * nG);
      q.zeros.set(p.zeros, t.packed.rowOffset * nG);
    });
    out.push({ module, rows: total, cols, q, targets: sorted });
  }
  return out;
}
