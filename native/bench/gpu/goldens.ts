// The device engine against transformers' goldens and its kernels against their references, on
// the GPU machine (bundled by native/bench/gpu/bundle-engine.sh: it needs @moeq/models):
//   node goldens.mjs <tiny-random dir> [--precision f32] [--out goldens.json]
// 1. cudaAttentionGemm (cuBLAS batched GEMMs) vs the double-precision attentionF32Ref and the
//    one-warp-per-query cudaAttentionF32 over GQA / window / chunk / sinks / MLA dims / bidirectional,
//    in f32, tf32 and bf16; the glue kernels (gather / scatter / renorm / strided) vs JS loops.
// 2. Every fixture: DeviceEngine.forward vs golden.safetensors (logits, every hidden state, every
//    router_logits within 1e-4 max relative error in f32, identical argmax) and vs the CPU engine.
//    Then the same fixtures with tf32 tensor cores (logits within 2e-2).
// 3. The device linear hook sees the same calls, with the same inputs, as the CPU engine's.
// 4. FP8-block and MXFP4 weights decoded on the device: bit-identical to the host decoders, and
//    the device forward over such sources equals the CPU engine's over the same sources.
// Exit 1 when anything fails or a fixture's architecture is not supported by the device engine.
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  DeviceEngine,
  type DeviceMatrix,
  deviceUnsupported,
  Engine,
  fp8BlockSource,
  type LinearCall,
  loadModel,
  mapSource,
  mxfp4ExpertSource,
  quantizableWeights,
  tensorToF32,
  type WeightSource,
} from "@moeq/models";
import { type CudaPrecision, cudaKernels, native } from "@moeq/native";
import { openSafetensors } from "@moeq/safetensors";
import { fromF32, type Tensor } from "@moeq/tensor";

const args = process.argv.slice(2);
const opt = (k: string, d: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : d;
};
const dir = args.find((a, i) => !a.startsWith("--") && (i === 0 || !args[i - 1].startsWith("--"))) ?? "tiny-random";
const precision = opt("--precision", "f32") as CudaPrecision;
const TOL = 1e-4;
const cu = cudaKernels(0);

type Row = { name: string; ok: boolean; detail: string };
const rows: Row[] = [];
const record = (name: string, ok: boolean, detail: string) => {
  rows.push({ name, ok, detail });
  console.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
};

function maxRel(got: Float32Array, want: Float32Array): number {
  if (got.length !== want.length) return Number.POSITIVE_INFINITY;
  let s = 0;
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    s = Math.max(s, Math.abs(want[i]));
    const d = Math.abs(got[i] - want[i]);
    e = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(e, d);
  }
  return s > 0 ? e / s : e;
}
function relNorm(got: Float32Array, want: Float32Array): number {
  let a = 0;
  let b = 0;
  for (let i = 0; i < want.length; i++) {
    a += (got[i] - want[i]) ** 2;
    b += want[i] ** 2;
  }
  return Math.sqrt(a / Math.max(b, 1e-30));
}
function argmaxDiff(got: Float32Array, want: Float32Array, cols: number): number {
  let bad = 0;
  for (let r = 0; r < want.length / cols; r++) {
    let g = 0;
    let w = 0;
    for (let c = 1; c < cols; c++) {
      if (got[r * cols + c] > got[r * cols + g]) g = c;
      if (want[r * cols + c] > want[r * cols + w]) w = c;
    }
    if (g !== w) bad++;
  }
  return bad;
}

let seed = 12345;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32 - 0.5;
};
const randArr = (n: number, s = 1) => Float32Array.from({ length: n }, () => rand() * 2 * s);
const up = (a: Float32Array | Int32Array) => {
  const b = cu.cudaAlloc(Math.max(4, a.byteLength));
  if (a.length) cu.cudaUpload(b, a);
  return b;
};
const down = (b: ReturnType<typeof cu.cudaAlloc>, n: number) => {
  const a = new Float32Array(n);
  cu.cudaDownload(b, a);
  return a;
};

// ---------- 1. kernels
type Variant = {
  name: string;
  B: number;
  T: number;
  Hq: number;
  Hkv: number;
  D: number;
  Dv: number;
  window?: number;
  chunk?: number;
  sinks?: boolean;
  causal?: boolean;
};
const variants: Variant[] = [
  { name: "gqa", B: 2, T: 77, Hq: 8, Hkv: 2, D: 64, Dv: 64 },
  { name: "window+sinks", B: 2, T: 130, Hq: 4, Hkv: 4, D: 32, Dv: 32, window: 17, sinks: true },
  { name: "chunk", B: 1, T: 200, Hq: 6, Hkv: 3, D: 48, Dv: 48, chunk: 64 },
  { name: "mla-dims", B: 2, T: 50, Hq: 4, Hkv: 4, D: 96, Dv: 64 },
  { name: "bidirectional", B: 1, T: 33, Hq: 2, Hkv: 1, D: 16, Dv: 16, causal: false },
  { name: "head128", B: 1, T: 512, Hq: 8, Hkv: 2, D: 128, Dv: 128 },
];
const attnTol: Record<CudaPrecision, number> = { f32: 1e-5, tf32: 5e-3, bf16: 2e-2 };
for (const v of variants) {
  const rowsN = v.B * v.T;
  const q = randArr(rowsN * v.Hq * v.D);
  const k = randArr(rowsN * v.Hkv * v.D);
  const vv = randArr(rowsN * v.Hkv * v.Dv);
  const opts = {
    batch: v.B,
    seqLen: v.T,
    numHeads: v.Hq,
    numKvHeads: v.Hkv,
    headDim: v.D,
    vHeadDim: v.Dv,
    causal: v.causal ?? true,
    window: v.window ?? 0,
    chunk: v.chunk ?? 0,
    sinks: v.sinks ? randArr(v.Hq, 2) : undefined,
  };
  const ref = new Float32Array(rowsN * v.Hq * v.Dv);
  native.attentionF32Ref(q, k, vv, ref, opts);
  const [dq, dk, dv] = [up(q), up(k), up(vv)];
  const dWarp = cu.cudaAlloc(ref.byteLength);
  cu.cudaAttentionF32(dq, dk, dv, dWarp, opts);
  const warp = down(dWarp, ref.length);
  for (const p of ["f32", "tf32", "bf16"] as const) {
    const dOut = cu.cudaAlloc(ref.byteLength);
    // a small scratch forces several GEMM chunks
    cu.cudaAttentionGemm(dq, dk, dv, dOut, opts, p, v.T * v.T * 4 * 3);
    const got = down(dOut, ref.length);
    const e = relNorm(got, ref);
    const ew = relNorm(got, warp);
    record(
      `attention-gemm ${v.name} ${p}`,
      e <= attnTol[p],
      `‖Δ‖/‖ref‖ ${e.toExponential(2)} (vs warp kernel ${ew.toExponential(2)})`,
    );
    cu.cudaFree(dOut);
  }
  for (const b of [dq, dk, dv, dWarp]) cu.cudaFree(b);
}

{
  // gather (scaled) → scatter-add (weighted), renorm, strided copy / multiply, against JS loops
  const n = 37;
  const cols = 19;
  const xr = 50;
  const x = randArr(xr * cols);
  const idx = Int32Array.from({ length: n }, (_, i) => (i * 7) % xr);
  const w = randArr(n);
  const dx = up(x);
  const di = up(idx);
  const dw = up(w);
  const g = cu.cudaAlloc(n * cols * 4);
  cu.cudaGatherRowsF32(dx, di, dw, g, n, cols);
  const gw = new Float32Array(n * cols);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < cols; c++) gw[i * cols + c] = Math.fround(x[idx[i] * cols + c] * w[i]);
  const y0 = randArr(xr * cols);
  const dy = up(y0);
  cu.cudaScatterAddRowsF32(dy, g, di, dw, n, cols);
  const yw = y0.slice();
  for (let i = 0; i < n; i++) for (let c = 0; c < cols; c++) yw[idx[i] * cols + c] += gw[i * cols + c] * w[i];
  const rn = randArr(n * 4).map(Math.abs);
  const dr = up(rn);
  cu.cudaRenormRowsF32(dr, n, 4);
  const rw = rn.slice();
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = 0; j < 4; j++) s = Math.fround(s + rw[r * 4 + j]);
    for (let j = 0; j < 4; j++) rw[r * 4 + j] = Math.fround(rw[r * 4 + j] / s);
  }
  const st = cu.cudaAlloc(10 * 5 * 4);
  cu.cudaStridedF32(dx, st, 10, 5, 2 * cols, 3);
  cu.cudaStridedF32(dx, st, 10, 5, cols, 1, true);
  const sw = new Float32Array(50);
  for (let r = 0; r < 10; r++)
    for (let c = 0; c < 5; c++) sw[r * 5 + c] = Math.fround(x[r * 2 * cols + c * 3] * x[r * cols + c]);
  const same = (a: Float32Array, b: Float32Array) => a.every((v, i) => v === b[i]);
  record("gather-rows", same(down(g, n * cols), gw), "identical to the JS loop");
  record("scatter-add-rows", same(down(dy, xr * cols), yw), "identical to the JS loop (fma = f32 + exact product)");
  record("renorm-rows", same(down(dr, n * 4), rw), "identical to the JS loop");
  record("strided", same(down(st, 50), sw), "identical to the JS loop");
  let rejected = "";
  try {
    cu.cudaGatherRowsF32(dx, up(Int32Array.from([0, xr])), null, g, 2, cols);
  } catch (e) {
    rejected = String(e);
  }
  record("gather bad index", /index 50 \(entry 1\)/.test(rejected), rejected || "not rejected");
}

// ---------- 2. fixtures
const fixtures = readdirSync(dir, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, "golden.safetensors")))
  .map((d) => d.name)
  .sort();
const table: string[] = [];
for (const name of fixtures) {
  const fdir = join(dir, name);
  const model = loadModel(fdir);
  const golden = openSafetensors(join(fdir, "golden.safetensors"));
  try {
    const why = deviceUnsupported(model.spec);
    if (why.length > 0) {
      record(`fixture ${name}`, false, `unsupported: ${why[0]}`);
      table.push(`${name.padEnd(18)} unsupported (${why[0]})`);
      continue;
    }
    const idsT = golden.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    const dev = new DeviceEngine(model.spec, model.source, { precision });
    const t0 = performance.now();
    let r: Awaited<ReturnType<DeviceEngine["forward"]>>;
    try {
      r = await dev.forward(ids, B, T, { hiddenStates: true, routerLogits: true });
    } catch (e) {
      record(`fixture ${name}`, false, `device forward failed: ${(e as Error).message}`);
      table.push(`${name.padEnd(18)} error: ${(e as Error).message.slice(0, 100)}`);
      dev.dispose();
      continue;
    }
    const ms = performance.now() - t0;
    dev.dispose();
    const cpu = await model.engine().forward(ids, B, T);
    const V = model.spec.vocabSize;
    const errs: Record<string, number> = { logits: maxRel(r.logits, golden.f32("logits")) };
    const nh = golden.names().filter((n) => n.startsWith("hidden.")).length;
    let worstHidden = 0;
    for (let i = 0; i < nh; i++)
      worstHidden = Math.max(
        worstHidden,
        maxRel(r.hiddenStates?.[i] ?? new Float32Array(0), golden.f32(`hidden.${i}`)),
      );
    const nr = golden.names().filter((n) => n.startsWith("router_logits.")).length;
    let worstRouter = 0;
    for (let j = 0; j < nr; j++)
      worstRouter = Math.max(
        worstRouter,
        maxRel(r.routerLogits?.[j] ?? new Float32Array(0), golden.f32(`router_logits.${j}`)),
      );
    const countsOk = (nh === 0 || r.hiddenStates?.length === nh) && (nr === 0 || r.routerLogits?.length === nr);
    const am = argmaxDiff(r.logits, golden.f32("logits"), V);
    const vsCpu = maxRel(r.logits, cpu.logits);
    const ok = countsOk && errs.logits <= TOL && worstHidden <= TOL && worstRouter <= TOL && am === 0;
    const line = `${name.padEnd(18)} logits ${errs.logits.toExponential(2)}  hidden(${nh}) ${worstHidden.toExponential(2)}  router(${nr}) ${worstRouter.toExponential(2)}  argmax≠ ${am}  vs CPU ${vsCpu.toExponential(2)}  ${ms.toFixed(0)} ms`;
    table.push(`${line}  ${ok ? "PASS" : "FAIL"}`);
    record(`fixture ${name}`, ok, line);
  } finally {
    golden.close();
    model.close();
  }
}

// ---------- 2b. the tensor-core path (tf32 GEMMs and attention) against the same goldens, loosely:
// what calibration in tf32 would perturb (bound 2e-2 relative on the logits)
if (precision === "f32")
  for (const name of fixtures) {
    const fdir = join(dir, name);
    const model = loadModel(fdir);
    const golden = openSafetensors(join(fdir, "golden.safetensors"));
    try {
      const idsT = golden.tensor("input_ids");
      const [B, T] = idsT.shape;
      const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
      const dev = new DeviceEngine(model.spec, model.source, { precision: "tf32" });
      const r = await dev.forward(ids, B, T);
      dev.dispose();
      const e = maxRel(r.logits, golden.f32("logits"));
      record(`tf32 ${name}`, e <= 2e-2, `logits max rel ${e.toExponential(2)} (tf32 tensor cores)`);
    } catch (err) {
      record(`tf32 ${name}`, false, `device forward failed: ${(err as Error).message}`);
    } finally {
      golden.close();
      model.close();
    }
  }

// ---------- 3. the linear hook: same calls, same inputs as the CPU engine's
for (const name of ["qwen3_moe", "gpt_oss", "dbrx", "deepseek_v3"].filter((n) => fixtures.includes(n))) {
  const model = loadModel(join(dir, name));
  try {
    const golden = openSafetensors(join(dir, name, "golden.safetensors"));
    const idsT = golden.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    golden.close();
    const key = (c: LinearCall) => `${c.layer}/${c.module}/${c.expert}/${c.projection}/${c.weight}`;
    const cpuCalls = new Map<string, Float32Array[]>();
    const cpu = model.engine();
    cpu.setLinearHook((c, x) => {
      const l = cpuCalls.get(key(c)) ?? [];
      l.push(x.slice());
      cpuCalls.set(key(c), l);
      return x;
    });
    await cpu.forward(ids, B, T);
    const devCalls = new Map<string, Float32Array[]>();
    const dev = new DeviceEngine(model.spec, model.source, { precision });
    dev.setLinearHook((c, x: DeviceMatrix) => {
      const l = devCalls.get(key(c)) ?? [];
      l.push(dev.download(x));
      devCalls.set(key(c), l);
      return undefined;
    });
    await dev.forward(ids, B, T);
    dev.dispose();
    let worst = 0;
    let same = cpuCalls.size === devCalls.size;
    for (const [k, l] of cpuCalls) {
      const d = devCalls.get(k);
      if (!d || d.length !== l.length) {
        same = false;
        continue;
      }
      for (let i = 0; i < l.length; i++) worst = Math.max(worst, maxRel(d[i], l[i]));
    }
    record(
      `linear hook ${name}`,
      same && worst <= TOL,
      `${cpuCalls.size} CPU sites / ${devCalls.size} device sites, inputs max rel ${worst.toExponential(2)}`,
    );
  } finally {
    model.close();
  }
}

// ---------- 3b. the calibrator's per-layer calls: attention → router → dispatch → expert rows → expert
for (const name of ["qwen3_moe", "gpt_oss", "dbrx", "llama4_text"].filter((n) => fixtures.includes(n))) {
  const model = loadModel(join(dir, name));
  try {
    const golden = openSafetensors(join(dir, name, "golden.safetensors"));
    const idsT = golden.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    golden.close();
    const cpu = model.engine();
    const dev = new DeviceEngine(model.spec, model.source, { precision });
    const L = model.spec.layers.findIndex((l) => l.mlp.kind === "moe");
    const seq = cpu.sequences(B, T);
    let hc = cpu.embed(ids, seq);
    let hd = dev.embed(ids, seq);
    for (let i = 0; i < L; i++) {
      hc = await cpu.runLayer(i, hc, seq);
      const next = await dev.runLayer(i, hd, seq);
      dev.free(hd);
      hd = next;
    }
    const ac = await cpu.attention(L, hc, seq);
    const ad = await dev.attention(L, hd, seq);
    const rc = await cpu.router(L, ac.x);
    const rd = await dev.router(L, ad.x);
    const hostR = dev.downloadRouting(rd);
    let worst = Math.max(maxRel(dev.download(ad.x), ac.x), maxRel(hostR.scores, rc.scores));
    const sameSel = hostR.indices.every((v, i) => v === rc.indices[i]);
    const d = dev.dispatch(rd);
    const H = model.spec.hiddenSize;
    let experts = 0;
    for (let e = 0; e < d.groups.length; e++) {
      const rowsE = d.groups[e].rows;
      if (rowsE.length === 0) continue;
      const xs = dev.expertRows(ad.x, d, e);
      const od = await dev.expert(L, e, xs);
      const xc = new Float32Array(rowsE.length * H);
      rowsE.forEach((r, i) => {
        xc.set(ac.x.subarray(r * H, (r + 1) * H), i * H);
      });
      const oc = await cpu.expert(L, e, xc);
      worst = Math.max(worst, maxRel(dev.download(od.out), oc.out), maxRel(dev.download(od.act), oc.act));
      dev.free(xs, od.out, od.act);
      experts++;
    }
    dev.freeDispatch(d);
    dev.freeRouting(rd);
    dev.free(hd, ad.residual, ad.x);
    dev.dispose();
    record(
      `calibrator calls ${name}`,
      sameSel && worst <= TOL,
      `layer ${L}: x, scores, ${experts} experts' out and act max rel ${worst.toExponential(2)}; top-k ${sameSel ? "identical" : "DIFFERS"}`,
    );
  } finally {
    model.close();
  }
}

// ---------- 4. FP8 block / MXFP4 codes decoded on the device
async function compareForward(label: string, fdir: string, source: WeightSource, check: string[]) {
  const model = loadModel(fdir);
  try {
    const golden = openSafetensors(join(fdir, "golden.safetensors"));
    const idsT = golden.tensor("input_ids");
    const [B, T] = idsT.shape;
    const ids = Array.from(new BigInt64Array(idsT.data.slice().buffer), Number);
    golden.close();
    // host decode of one tensor vs the device's, bit for bit
    const dev = new DeviceEngine(model.spec, source, { precision });
    let identical = true;
    for (const n of check) {
      const t = source.tensor(n);
      const host = new Uint8Array(t.data);
      // what the device engine uploaded and decoded for this tensor
      const w = dev.storedWeight(n);
      const got = new Uint8Array(host.byteLength);
      if (w.buf.bytes !== host.byteLength) identical = false;
      else cu.cudaDownload(w.buf, got);
      if (!got.every((v, i) => v === host[i])) identical = false;
    }
    const r = await dev.forward(ids, B, T);
    dev.dispose();
    const c = await new Engine(model.spec, source).forward(ids, B, T);
    const e = maxRel(r.logits, c.logits);
    record(
      `${label}`,
      identical && e <= TOL,
      `decoded weights ${identical ? "bit-identical" : "DIFFER"} (${check.length} tensors); device vs CPU forward logits ${e.toExponential(2)}`,
    );
  } finally {
    model.close();
  }
}

if (fixtures.includes("qwen3_moe")) {
  // every quantizable weight to e4m3 with 16×16 block scales (any block size, not only 128)
  const fdir = join(dir, "qwen3_moe");
  const model = loadModel(fdir);
  const map = new Map<string, Tensor>();
  for (const n of model.source.names()) {
    const t = model.source.tensor(n);
    map.set(n, { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() }); // outlives the mapping
  }
  const names: string[] = [];
  for (const r of quantizableWeights(model.arch, model.spec)) {
    const [rows, cols] = r.shape;
    const w = tensorToF32(model.source.tensor(r.tensor), r.tensor);
    const br = 16;
    const bc = 16;
    const sr = Math.ceil(rows / br);
    const sc = Math.ceil(cols / bc);
    const scales = new Float32Array(sr * sc);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        const b = Math.floor(i / br) * sc + Math.floor(j / bc);
        scales[b] = Math.max(scales[b], Math.abs(w[i * cols + j]) / 448);
      }
    const q = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        const s = scales[Math.floor(i / br) * sc + Math.floor(j / bc)];
        q[i * cols + j] = s > 0 ? w[i * cols + j] / s : 0;
      }
    map.set(r.tensor, fromF32(q, "F8_E4M3", [rows, cols]));
    map.set(`${r.tensor.slice(0, -".weight".length)}.weight_scale_inv`, {
      dtype: "F32",
      shape: [sr, sc],
      data: new Uint8Array(scales.buffer),
    });
    names.push(r.tensor);
  }
  model.close();
  const check = names.filter((n) => n.includes("experts.0.") || n.includes("q_proj"));
  for (const dtype of ["BF16", "F32"] as const)
    await compareForward(`fp8-block ${dtype}`, fdir, fp8BlockSource(mapSource(map), { block: [16, 16], dtype }), check);
}

if (fixtures.includes("gpt_oss")) {
  // random MXFP4 codes for every fused expert tensor (both must have a multiple of 32 columns)
  const fdir = join(dir, "gpt_oss");
  const model = loadModel(fdir);
  const base = model.source;
  const fused = base.names().filter((n) => /experts\.(gate_up_proj|down_proj)$/.test(n));
  const extra = new Map<string, Tensor>();
  let ok = true;
  for (const n of fused) {
    const [E, a, b] = base.tensor(n).shape; // presented [E, cols, rows] (transposed)
    if (a % 32 !== 0) ok = false;
    const nb = a / 32;
    const blocks = new Uint8Array(E * b * nb * 16).map(() => Math.floor((rand() + 0.5) * 256) & 255);
    const scales = new Uint8Array(E * b * nb).map(() => 120 + (Math.floor((rand() + 0.5) * 8) & 7));
    extra.set(`${n}_blocks`, { dtype: "U8", shape: [E, b, nb, 16], data: blocks });
    extra.set(`${n}_scales`, { dtype: "U8", shape: [E, b, nb], data: scales });
  }
  if (ok) {
    const hidden = new Set(fused);
    const stored: WeightSource = {
      has: (n) => extra.has(n) || (!hidden.has(n) && base.has(n)),
      tensor: (n) => extra.get(n) ?? base.tensor(n),
      names: () => [...base.names().filter((n) => !hidden.has(n)), ...extra.keys()],
    };
    await compareForward("mxfp4 experts", fdir, mxfp4ExpertSource(stored), fused);
  } else record("mxfp4 experts", false, "gpt_oss fixture's expert dims are not multiples of 32");
  model.close();
}

const failed = rows.filter((r) => !r.ok);
console.log(`\nDevice engine (${precision}) vs transformers goldens (max relative error; tolerance ${TOL}):`);
for (const l of table) console.log(l);
console.log(`\nchecks: ${rows.length - failed.length} passed, ${failed.length} failed`);
for (const f of failed) console.log(`  FAIL ${f.name}: ${f.detail}`);
const out = opt("--out", "");
if (out) writeFileSync(out, JSON.stringify({ precision, rows, table }, null, 1));
process.exit(failed.length ? 1 : 0);
