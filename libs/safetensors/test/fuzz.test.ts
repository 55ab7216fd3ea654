// Mutates real headers (the shared fixtures' and hand-made edge cases) thousands of times and
// checks that the reader either returns a self-consistent result or throws SafetensorsError —
// never another exception, a hang, or a view outside the file.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dtypeBytes, numel } from "@moeq/tensor";
import { describe, expect, it } from "vitest";
import { headerLength, openSafetensors, parseHeader, SafetensorsError } from "../src/index.ts";
import { rng, SHARED, tempDir } from "./helpers.ts";

interface Case {
  header: Uint8Array; // the JSON bytes as written
  declared: number; // the u64 length prefix
  dataLength: number; // bytes after the header (all zero: only their count matters to the parser)
}

const seeds: Case[] = [
  join(SHARED, "fixtures", "tiny-random", "qwen3_moe", "golden.safetensors"),
  join(SHARED, "fixtures", "tiny-random", "gpt_oss", "model.safetensors"),
  join(SHARED, "models", "tiny-qwen3moe-brown", "golden.safetensors"),
].map((f) => {
  const b = readFileSync(f);
  const n = Number(b.readBigUInt64LE(0));
  return { header: new Uint8Array(b.subarray(8, 8 + n)), declared: n, dataLength: b.length - 8 - n };
});

const TOKENS = [
  '"',
  "{",
  "}",
  "[",
  "]",
  ",",
  ":",
  "0",
  "9",
  "-",
  "1e3",
  "\\u0000",
  "\\",
  '"dtype"',
  '"F64"',
  '"BOOL"',
  "null",
  "\xff",
  " ",
  "18446744073709551616",
];

function mutate(c: Case, r: () => number): Case {
  let header = Buffer.from(c.header);
  let { dataLength } = c;
  let declared: number | undefined;
  const kind = Math.floor(r() * 8);
  const pos = () => Math.floor(r() * header.length);
  if (kind === 0) header[pos()] = Math.floor(r() * 256);
  else if (kind === 1) {
    // one digit inside the JSON: offsets and shapes shift by small amounts
    const digits: number[] = [];
    for (let i = 0; i < header.length; i++) if (header[i] >= 0x30 && header[i] <= 0x39) digits.push(i);
    if (digits.length) header[digits[Math.floor(r() * digits.length)]] = 0x30 + Math.floor(r() * 10);
  } else if (kind === 2) {
    const p = pos();
    header = Buffer.concat([
      header.subarray(0, p),
      Buffer.from(TOKENS[Math.floor(r() * TOKENS.length)], "latin1"),
      header.subarray(p),
    ]);
  } else if (kind === 3) {
    const p = pos();
    header = Buffer.concat([header.subarray(0, p), header.subarray(p + 1 + Math.floor(r() * 8))]);
  } else if (kind === 4) dataLength = Math.floor(r() * dataLength);
  else if (kind === 5) dataLength += 1 + Math.floor(r() * 16);
  else if (kind === 6) {
    const dt = ["F32", "I64", "BF16", "U8", "F8_E4M3", "C64", "F4", "Q8"][Math.floor(r() * 8)];
    header = Buffer.from(header.toString("latin1").replace(/"dtype":"[A-Z0-9_]+"/, `"dtype":"${dt}"`), "latin1");
  } else
    declared = [0, 1, header.length - 1, header.length + 1, 2 ** 40, Math.floor(r() * 2 ** 31)][Math.floor(r() * 6)];
  return { header, declared: declared ?? header.length, dataLength };
}

const fileBytes = (c: Case): Uint8Array => {
  const out = new Uint8Array(8 + c.header.length + c.dataLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(c.declared), true);
  out.set(c.header, 8);
  return out;
};

describe("header fuzzing", () => {
  it("4000 seeded mutations: only valid results or SafetensorsError", () => {
    const r = rng(20261126);
    const started = Date.now();
    let valid = 0;
    let errors = 0;
    for (let i = 0; i < 4000 && Date.now() - started < 4000; i++) {
      let c = seeds[i % seeds.length];
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) c = mutate(c, r);
      // the reader's two steps on this file without materialising its (zero) data section
      const size = 8 + c.header.length + c.dataLength;
      const prefix = new Uint8Array(8);
      new DataView(prefix.buffer).setBigUint64(0, BigInt(c.declared), true);
      try {
        const n = headerLength(prefix, size, `case-${i}`);
        const hb =
          n <= c.header.length ? c.header.subarray(0, n) : Buffer.concat([c.header, Buffer.alloc(n - c.header.length)]);
        const h = parseHeader(hb, size, `case-${i}`);
        // a result is only acceptable if it really describes this buffer
        let at = 0;
        for (const e of h.entries) {
          expect(e.begin).toBe(at);
          expect(e.end - e.begin).toBe(numel(e.shape) * dtypeBytes(e.dtype));
          at = e.end;
        }
        expect(8 + h.headerLength + at).toBe(size);
        valid++;
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`case ${i}: ${String(e)}`);
        expect(e.file).toBe(`case-${i}`);
        errors++;
      }
    }
    console.log(`fuzz: ${valid} valid, ${errors} typed errors in ${Date.now() - started} ms`);
    expect(valid + errors).toBeGreaterThanOrEqual(2000);
    expect(errors).toBeGreaterThan(valid / 10);
  }, 30_000);

  it("300 mutated files through openSafetensors, touching every tensor that opens", () => {
    using tmp = tempDir("fuzz");
    const r = rng(99);
    const p = join(tmp.dir, "f.safetensors");
    for (let i = 0; i < 300; i++) {
      writeFileSync(p, fileBytes(mutate(seeds[i % seeds.length], r)));
      try {
        const c = openSafetensors(p);
        for (const n of c.names()) {
          const t = c.tensor(n);
          expect(t.data.byteOffset + t.data.byteLength).toBeLessThanOrEqual(t.data.buffer.byteLength);
        }
        c.close();
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw new Error(`file case ${i}: ${String(e)}`);
      }
    }
  }, 30_000);
});
