#!/usr/bin/env node
// An alternative quantizer that implements the quantizer contract with nothing but the
// language-neutral schemas (../../schemas/*.json), a NATS + JetStream client and msgpack — no
// @moeq package — to prove that a stage can be swapped for another implementation.
// Contract: pull `quantize-expert` work items from the durable consumer work-quantize of stream
// MOEQ_<run>_WORK, read the bf16 weight through its `file` descriptor, quantize it (RTN:
// per-group min/max, GPTQ's find_params; codes unsigned, dequant = scale·(code − zero)), write
// codes/scales/zeros/g_idx as files and append ExpertQuantized to the run's event stream with the
// event's key as Nats-Msg-Id, then ack.
import { closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Packr } from "msgpackr";
import { validator } from "./json-schema.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const schemas = join(here, "..", "..", "schemas");
const validWorkItem = validator(JSON.parse(readFileSync(join(schemas, "work-item.json"), "utf8")));
const validWork = validator(JSON.parse(readFileSync(join(schemas, "quantize-expert-work.json"), "utf8")));
const validEvent = validator(JSON.parse(readFileSync(join(schemas, "event.json"), "utf8")));
const packr = new Packr({ useRecords: false });

const env = (k) => {
  const v = process.env[k];
  if (!v) {
    console.error(`alt-quantizer: ${k} is not set`);
    process.exit(2);
  }
  return v;
};
const url = env("MOEQ_NATS_URL");
const runId = env("MOEQ_RUN_ID");
const workDir = env("MOEQ_WORK_DIR");
const stage = process.env.MOEQ_STAGE ?? "quantizer";
const instance = process.env.MOEQ_INSTANCE ?? "0";
const say = (s) => console.log(`${new Date().toISOString()} alt-quantizer.${instance} ${s}`);

const nc = await connect({ servers: url, token: process.env.MOEQ_NATS_TOKEN, name: `alt-quantizer.${instance}` });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const eventStream = `MOEQ_${runId}`;

async function append(type, payload, msgId) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const last = (await jsm.streams.info(eventStream)).state.last_seq;
    const envelope = { runId, seq: last + 1, stage, time: new Date().toISOString(), type, payload };
    const errors = validEvent(envelope, type);
    if (errors.length) throw new Error(`refusing to append an invalid ${type}: ${errors.slice(0, 3).join("; ")}`);
    try {
      await js.publish(`moeq.${runId}.evt.${type}`, packr.pack(envelope), {
        expect: { lastSequence: last },
        ...(msgId ? { msgID: msgId } : {}),
      });
      return;
    } catch (e) {
      if (!/wrong last sequence/i.test(String(e?.message))) throw e;
    }
  }
  throw new Error(`append ${type}: too much contention`);
}

function readFileRange(loc) {
  const buf = Buffer.alloc(loc.bytes);
  const fd = openSync(loc.path, "r");
  try {
    for (let off = 0; off < loc.bytes; ) {
      const n = readSync(fd, buf, off, loc.bytes - off, loc.offset + off);
      if (n === 0) throw new Error(`${loc.path}: ends before byte ${loc.offset + loc.bytes}`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bf16ToF32 = (h) => {
  u32[0] = h << 16;
  return f32[0];
};
const roundHalfEven = (x) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

// compressed-tensors stores weight_scale in the weight's dtype (bf16 here): round each scale to it
// (f64 → f32 → bf16, round to nearest even as torch casts) before the zero point and codes use
// it, so the checkpoint decodes to exactly what was quantized. The zero point is clamped because
// a scale rounded down can put −xmin/scale just past maxq.
const scaleToBf16 = (x) => {
  f32[0] = x;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return f32[0] || 2 ** -133;
};

function rtn(w, rows, cols, bits, groupSize, symmetric) {
  const g = groupSize === -1 ? cols : groupSize;
  const nG = Math.ceil(cols / g);
  const maxq = 2 ** bits - 1;
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * nG);
  const zeros = new Int32Array(rows * nG);
  const gIdx = new Int32Array(cols);
  for (let c = 0; c < cols; c++) gIdx[c] = Math.floor(c / g);
  for (let r = 0; r < rows; r++)
    for (let gi = 0; gi < nG; gi++) {
      const start = r * cols + gi * g;
      const len = Math.min(g, cols - gi * g);
      let xmin = 0;
      let xmax = 0;
      for (let i = start; i < start + len; i++) {
        if (w[i] < xmin) xmin = w[i];
        if (w[i] > xmax) xmax = w[i];
      }
      if (symmetric) {
        xmax = Math.max(-xmin, xmax);
        xmin = -xmax;
      }
      if (xmin === 0 && xmax === 0) {
        xmin = -1;
        xmax = 1;
      }
      const scale = scaleToBf16((xmax - xmin) / maxq);
      const zero = symmetric ? (maxq + 1) / 2 : Math.min(maxq, Math.max(0, roundHalfEven(-xmin / scale)));
      scales[r * nG + gi] = scale;
      zeros[r * nG + gi] = zero;
      for (let j = start; j < start + len; j++)
        codes[j] = Math.min(maxq, Math.max(0, roundHalfEven(w[j] / scale) + zero));
    }
  return { codes, scales, zeros, gIdx, nG };
}

function writeTensor(name, dtype, shape, view) {
  const dir = join(workDir, "tensors", "alt");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  writeFileSync(`${path}.tmp`, bytes);
  renameSync(`${path}.tmp`, path);
  return { dtype, shape, loc: { kind: "file", path, offset: 0, bytes: bytes.byteLength } };
}

async function handle(m) {
  const item = packr.unpack(m.data);
  const errors = [
    ...validWorkItem(item, "item"),
    ...(item && typeof item === "object" ? validWork(item.payload, "item.payload") : []),
  ];
  if (errors.length) {
    say(`rejecting ${m.subject}#${m.seq}: ${errors.slice(0, 3).join("; ")}`);
    m.term();
    return;
  }
  const p = item.payload;
  const [rows, cols] = p.weight.shape;
  if (p.weight.dtype !== "bf16" || p.weight.loc.kind !== "file" || p.weight.loc.bytes !== rows * cols * 2) {
    say(`rejecting ${item.id}: need a bf16 file descriptor of ${rows}×${cols}`);
    m.term();
    return;
  }
  const t0 = Date.now();
  const raw = readFileRange(p.weight.loc);
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = bf16ToF32(raw.readUInt16LE(2 * i));
  const o = p.options;
  // This implementation only does RTN; GPTQ work is quantized with RTN (it ignores the Hessian).
  const q = rtn(w, rows, cols, o.bits, o.groupSize, o.symmetric);
  let loss = 0;
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = r * q.nG + q.gIdx[c];
      loss += (w[r * cols + c] - q.scales[g] * (q.codes[r * cols + c] - q.zeros[g])) ** 2;
    }
  const base = `L${p.layer}.E${p.expert}.${p.proj}`;
  const outputs = {
    codes: writeTensor(`${base}.codes`, "u8", [rows, cols], q.codes),
    scales: writeTensor(`${base}.scales`, "f32", [rows, q.nG], q.scales),
    zeros: writeTensor(`${base}.zeros`, "i32", [rows, q.nG], q.zeros),
    g_idx: writeTensor(`${base}.g_idx`, "i32", [cols], q.gIdx),
  };
  const payload = {
    layer: p.layer,
    expert: p.expert,
    proj: p.proj,
    outputs,
    loss,
    algorithm: "rtn(alt)",
    seconds: (Date.now() - t0) / 1000,
  };
  await append("ExpertQuantized", payload, `${runId}/ExpertQuantized/${p.layer}/${p.expert}/${p.proj}`);
  m.ack();
}

process.on("SIGTERM", async () => {
  await nc.close().catch(() => undefined);
  process.exit(0);
});
await append("StageStarted", { stage, instance, host: hostname(), pid: process.pid, version: "alt-0.1.0" });
const consumer = await js.consumers.get(`MOEQ_${runId}_WORK`, "work-quantize");
say("consuming quantize work");
const msgs = await consumer.consume({ max_messages: 1 });
for await (const m of msgs) {
  try {
    await handle(m);
  } catch (e) {
    say(`failed ${m.subject}#${m.seq}: ${e?.message ?? e}`);
    m.nak(1000);
  }
}
