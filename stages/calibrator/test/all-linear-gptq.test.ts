// `moeq quantize --targets all-linear --algo gptq --propagate quantized` on ERNIE-4.5-MoE's tiny
// fixture (a dense first layer, shared experts, GQA attention with interleaved RoPE): every
// attention, dense-MLP and shared-expert linear is published as GPTQ work with a non-empty
// Hessian gathered from the calibration tokens (one file per distinct input), the algorithm of
// every item in the events is the one its Hessian allows, layer 0's o_proj Hessian equals the one
// a hand-written float64 attention (itself checked against transformers' golden hidden states)
// gives on the same windows, and with --propagate quantized the MoE input of layer 1 is what the
// packed checkpoint computes (quantized layer 0, then quantized layer-1 attention).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { connectBus, RunEventLog, startNatsServer } from "@moeq/bus";
import type { Event, EventOf, TensorDescriptor } from "@moeq/contracts";
import { Engine, loadModel, overlaySource, tensorToF32 } from "@moeq/models";
import { quantTargets, randomWindows, runPaths, targetKey } from "@moeq/runtime";
import { f32Tensor, type Tensor } from "@moeq/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const fixture = join(root, "..", "shared", "fixtures", "tiny-random", "ernie4_5_moe");
const work = mkdtempSync(join(tmpdir(), "moeq-calib-all-linear-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const [N, T] = [4, 16];

interface Run {
  readonly status: string;
  readonly runId: string;
  readonly workDir: string;
}

function moeq(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(join(root, "moeq"), args, { maxBuffer: 64 << 20, timeout: 300_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

async function runEvents(workDir: string, runId: string): Promise<Event[]> {
  const server = await startNatsServer({ baseDir: work, storeDir: runPaths(workDir).natsStore });
  try {
    const bus = await connectBus({ url: server.url, token: server.token, name: "all-linear-test" });
    try {
      return await (await RunEventLog.open(bus, runId)).read(1);
    } finally {
      await bus.nc.drain();
    }
  } finally {
    await server.stop();
  }
}

/** The bytes a file descriptor names (a copy, aligned for any typed view). */
function fileBytes(d: TensorDescriptor): ArrayBuffer {
  if (d.loc.kind !== "file") throw new Error(`expected a file descriptor, got ${d.loc.kind}`);
  const b = readFileSync(d.loc.path).subarray(d.loc.offset, d.loc.offset + d.loc.bytes);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}
const f32File = (d: TensorDescriptor) => new Float32Array(fileBytes(d));

/** Minimal safetensors reader for the golden file (f32 and i64 tensors). */
function golden(name: string): { shape: number[]; f32?: Float32Array; i64?: number[] } {
  const buf = readFileSync(join(fixture, "golden.safetensors"));
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const h = header[name];
  const bytes = buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (h.dtype === "F32") return { shape: h.shape, f32: new Float32Array(copy) };
  if (h.dtype === "I64") return { shape: h.shape, i64: Array.from(new BigInt64Array(copy), Number) };
  throw new Error(`golden ${name}: dtype ${h.dtype}`);
}

// ---- a float64 ERNIE-4.5 layer 0, written from the model's definition (not the engine's blocks)
const cfg = { H: 64, heads: 4, kv: 2, d: 16, theta: 500000, eps: 1e-5, inter: 96 };
const model = loadModel(fixture);
afterAll(() => model.close());
const W = (n: string) => Float64Array.from(tensorToF32(model.source.tensor(n), n));
const p0 = "model.layers.0";

function rmsNorm(x: Float64Array, rows: number, w: Float64Array): Float64Array {
  const { H, eps } = cfg;
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < H; c++) s += x[r * H + c] ** 2;
    const inv = 1 / Math.sqrt(s / H + eps);
    for (let c = 0; c < H; c++) out[r * H + c] = x[r * H + c] * inv * w[c];
  }
  return out;
}

/** y[rows, out] = x[rows, in]·Wᵀ */
function matmulT(x: Float64Array, rows: number, w: Float64Array, out: number, inn: number): Float64Array {
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += x[r * inn + i] * w[o * inn + i];
      y[r * out + o] = s;
    }
  return y;
}

/** Interleaved RoPE: pairs (2i, 2i+1) of each head rotated by t·θ^(−2i/d). */
function rope(x: Float64Array, B: number, S: number, heads: number) {
  const { d, theta } = cfg;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < S; t++)
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) {
          const a = t * theta ** ((-2 * i) / d);
          const o = ((b * S + t) * heads + h) * d + 2 * i;
          const [x0, x1] = [x[o], x[o + 1]];
          x[o] = x0 * Math.cos(a) - x1 * Math.sin(a);
          x[o + 1] = x1 * Math.cos(a) + x0 * Math.sin(a);
        }
}

/** Input of o_proj [B·S, heads·d] for hidden states h [B·S, H] of layer 0. */
function attentionOutput(h: Float64Array, B: number, S: number): Float64Array {
  const { H, heads, kv, d } = cfg;
  const rows = B * S;
  const x = rmsNorm(h, rows, W(`${p0}.input_layernorm.weight`));
  const q = matmulT(x, rows, W(`${p0}.self_attn.q_proj.weight`), heads * d, H);
  const k = matmulT(x, rows, W(`${p0}.self_attn.k_proj.weight`), kv * d, H);
  const v = matmulT(x, rows, W(`${p0}.self_attn.v_proj.weight`), kv * d, H);
  rope(q, B, S, heads);
  rope(k, B, S, kv);
  const out = new Float64Array(rows * heads * d);
  const p = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < S; t++)
      for (let hh = 0; hh < heads; hh++) {
        const g = Math.floor(hh / (heads / kv));
        const qo = ((b * S + t) * heads + hh) * d;
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[qo + i] * k[((b * S + s) * kv + g) * d + i];
          p[s] = dot / Math.sqrt(d);
          max = Math.max(max, p[s]);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += p[s] = Math.exp(p[s] - max);
        for (let s = 0; s <= t; s++)
          for (let i = 0; i < d; i++) out[qo + i] += (p[s] / sum) * v[((b * S + s) * kv + g) * d + i];
      }
  return out;
}

/** The whole dense layer 0 (attention + SiLU-gated MLP), for the check against transformers. */
function layer0(h: Float64Array, B: number, S: number): Float64Array {
  const { H, heads, d, inter } = cfg;
  const rows = B * S;
  const a = matmulT(attentionOutput(h, B, S), rows, W(`${p0}.self_attn.o_proj.weight`), H, heads * d);
  const res = h.map((v, i) => v + a[i]);
  const x = rmsNorm(res, rows, W(`${p0}.post_attention_layernorm.weight`));
  const g = matmulT(x, rows, W(`${p0}.mlp.gate_proj.weight`), inter, H);
  const u = matmulT(x, rows, W(`${p0}.mlp.up_proj.weight`), inter, H);
  const act = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]);
  const y = matmulT(act, rows, W(`${p0}.mlp.down_proj.weight`), H, inter);
  return res.map((v, i) => v + y[i]);
}

function embed(ids: ArrayLike<number>): Float64Array {
  const E = W("model.embed_tokens.weight");
  const out = new Float64Array(ids.length * cfg.H);
  for (let r = 0; r < ids.length; r++) out.set(E.subarray(ids[r] * cfg.H, (ids[r] + 1) * cfg.H), r * cfg.H);
  return out;
}

const relErr = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  let e = 0;
  let s = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i]));
    s = Math.max(s, Math.abs(want[i]));
  }
  return e / s;
};

let run: Run;
let events: Event[];

beforeAll(async () => {
  const out = join(work, "out");
  const r = await moeq([
    "quantize",
    fixture,
    "--out",
    out,
    "--work-dir",
    join(work, "run"),
    // the checks read the Hessian and code files, which a finished run deletes otherwise
    "--keep-artifacts",
    "--algo",
    "gptq",
    "--targets",
    "all-linear",
    "--group-size",
    "16",
    "--propagate",
    "quantized",
    "--calib",
    `random:${N}x${T}`,
    "--eval",
    "random:1x16",
    "--json",
  ]);
  expect(r.code, r.stderr.slice(-3000)).toBe(0);
  run = JSON.parse(r.stdout) as Run;
  expect(run.status).toBe("completed");
  events = await runEvents(run.workDir, run.runId);
}, 300_000);

describe("GPTQ for every targeted linear (ernie4_5_moe, all-linear)", () => {
  it("publishes GPTQ work with a Hessian of the calibration tokens for attention, dense-MLP and shared-expert linears", () => {
    const targets = quantTargets(model.arch, model.spec, "all-linear");
    const nonExpert = targets.filter((t) => t.module !== "experts");
    expect(new Set(nonExpert.map((t) => t.module))).toEqual(new Set(["attention", "mlp", "shared_expert"]));
    const calibrated = new Map(
      events
        .filter((e): e is EventOf<"ExpertCalibrated"> => e.type === "ExpertCalibrated")
        .map((e) => [targetKey(e.payload), e.payload]),
    );
    const quantized = new Map(
      events
        .filter((e): e is EventOf<"ExpertQuantized"> => e.type === "ExpertQuantized")
        .map((e) => [targetKey(e.payload), e.payload]),
    );
    const files = new Set<string>();
    for (const t of nonExpert) {
      const c = calibrated.get(targetKey(t));
      expect(c, targetKey(t)).toBeDefined();
      expect(c!.hessian.shape, targetKey(t)).toEqual([t.cols, t.cols]);
      expect(c!.tokens).toBe(N * T);
      expect(c!.weightMass).toBe(N * T);
      const h = f32File(c!.hessian);
      // Σ x xᵀ of real inputs: positive diagonal
      for (let i = 0; i < t.cols; i++) expect(h[i * t.cols + i], `${targetKey(t)} H[${i},${i}]`).toBeGreaterThan(0);
      expect(quantized.get(targetKey(t))?.algorithm, targetKey(t)).toBe("gptq");
      if (c!.hessian.loc.kind === "file") files.add(c!.hessian.loc.path);
    }
    // one Hessian per distinct input: q/k/v share, gate/up share → attention 2, MLP 2 per layer
    expect(files.size).toBe(2 * 3 + 2 * 3);
    // every item's label is what its Hessian allows: GPTQ with one, RTN (a zero-token expert) without
    for (const t of targets) {
      const c = calibrated.get(targetKey(t));
      const q = quantized.get(targetKey(t));
      expect(q, targetKey(t)).toBeDefined();
      expect(q!.algorithm, targetKey(t)).toBe(c && c.tokens > 0 ? "gptq" : "rtn");
    }
  });

  it("layer 0's o_proj Hessian is Σ a·aᵀ of a hand-written float64 attention (checked against transformers) on the calibration windows", () => {
    // the hand-written layer reproduces transformers' hidden.1 from its hidden.0
    const g0 = golden("hidden.0");
    const [B, S] = g0.shape;
    expect(relErr(layer0(Float64Array.from(g0.f32!), B, S), golden("hidden.1").f32!)).toBeLessThan(1e-4);
    expect(relErr(embed(golden("input_ids").i64!), g0.f32!)).toBeLessThan(1e-6);

    const ids = randomWindows(N, T, model.spec.vocabSize, 0).ids;
    const a = attentionOutput(embed(Array.from(ids, Number)), N, T);
    const k = cfg.heads * cfg.d;
    const want = new Float64Array(k * k);
    for (let r = 0; r < N * T; r++)
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) want[i * k + j] += a[r * k + i] * a[r * k + j];
    const c = events.find(
      (e): e is EventOf<"ExpertCalibrated"> =>
        e.type === "ExpertCalibrated" && e.payload.layer === 0 && e.payload.proj === "attn.o_proj",
    );
    expect(c).toBeDefined();
    expect(relErr(f32File(c!.payload.hessian), want)).toBeLessThan(1e-4);
  });

  it("--propagate quantized: layer 1's MoE input is the one of the quantized layer 0 and quantized layer-1 attention", async () => {
    // the quantizer's outputs, dequantized here by hand: w[r, c] = scale[r, g(c)]·(code[r, c] − zero[r, g(c)])
    const byKey = new Map(quantTargets(model.arch, model.spec, "all-linear").map((t) => [targetKey(t), t]));
    const deq = new Map<string, Tensor>();
    for (const e of events)
      if (e.type === "ExpertQuantized" && e.payload.layer <= 1) {
        const t = byKey.get(targetKey(e.payload))!;
        const o = e.payload.outputs;
        const codes = new Uint8Array(fileBytes(o.codes));
        const scales = f32File(o.scales);
        const zeros = new Int32Array(fileBytes(o.zeros));
        const gIdx = new Int32Array(fileBytes(o.g_idx));
        const nG = scales.length / t.rows;
        const w = new Float32Array(t.rows * t.cols);
        for (let r = 0; r < t.rows; r++)
          for (let c = 0; c < t.cols; c++) {
            const g = r * nG + gIdx[c];
            w[r * t.cols + c] = scales[g] * (codes[r * t.cols + c] - zeros[g]);
          }
        deq.set(t.tensor, f32Tensor(w, [t.rows, t.cols]));
      }
    const quantizedEngine = new Engine(model.spec, overlaySource(model.source, deq));
    const fpEngine = model.engine();
    const ids = randomWindows(N, T, model.spec.vocabSize, 0).ids;
    const moeInput = async (e: Engine) => {
      const seq = e.sequences(N, T);
      const h1 = await e.runLayer(0, e.embed(ids, seq), seq);
      return (await e.attention(1, h1, seq)).x;
    };
    const got = f32File({
      dtype: "f32",
      shape: [N * T, cfg.H],
      loc: {
        kind: "file",
        path: join(run.workDir, "tensors", "calib", "L1.x.bin"),
        offset: 0,
        bytes: N * T * cfg.H * 4,
      },
    });
    const wantQ = await moeInput(quantizedEngine);
    const fp = await moeInput(fpEngine);
    expect(relErr(got, wantQ)).toBeLessThan(1e-5);
    // and the quantized weights really changed it
    expect(relErr(fp, wantQ)).toBeGreaterThan(1e-3);
  });
});
