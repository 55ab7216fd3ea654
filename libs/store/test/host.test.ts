// Host-aware descriptors over a real nats-server: the home host's file server and a worker that
// claims to be on another host (its own host id), so every tensor goes export → object store →
// worker and worker → object store/inline → import. Byte-level expectations come from the files
// the test writes, not from the code under test.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Bus } from "@moeq/bus";
import { packValue, type TensorDescriptor, unpackValue } from "@moeq/contracts";
import { Result } from "effect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type HostFileServer,
  HostTensors,
  hostSubjects,
  localHostId,
  preferredLocation,
  reachOf,
  serveHostFiles,
} from "../src/index.ts";
import { freshRunId, startTestNats, type TestNats, tempRoot } from "./helpers.ts";

let nats: TestNats;
let bus: Bus;
let server: HostFileServer;
const runId = freshRunId();
const workDir = tempRoot("host-work");
const modelDir = tempRoot("host-model");
const outside = tempRoot("host-outside");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

// 300 000 bytes (object store path) and 1 000 bytes (inline path) of a known pattern.
const big = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 131 + 7) & 255);
const small = Uint8Array.from({ length: 1000 }, (_, i) => (i * 17) & 255);
const file = (path: string, bytes: number, offset = 0): TensorDescriptor => ({
  dtype: "u8",
  shape: [bytes],
  loc: { kind: "file", path, offset, bytes },
});

beforeAll(async () => {
  nats = await startTestNats();
  bus = await nats.connect("store-host");
  writeFileSync(join(modelDir, "big.bin"), big);
  writeFileSync(join(modelDir, "small.bin"), Buffer.concat([Buffer.alloc(24), small]));
  writeFileSync(join(outside, "secret.bin"), small);
  server = await serveHostFiles(bus, { runId, hostId: "home", roots: [workDir, modelDir], workDir });
});
afterAll(async () => {
  await server?.stop();
  await bus?.nc.drain();
  await nats?.stop();
});

const ask = async (subject: string, body: unknown) => {
  const m = await bus.nc.request(subject, packValue(body), { timeout: 10_000 });
  return Result.getOrThrow(unpackValue(m.data, "reply")) as {
    ok?: TensorDescriptor;
    error?: { tag: string; message: string; permanent: boolean };
  };
};

describe("descriptor reach across hosts", () => {
  it("file/shm are direct on their own host only; cuda never crosses; obj/inline go anywhere", () => {
    const shm = { kind: "shm", segment: "moeq-r-1.0", offset: 0, bytes: 4 } as const;
    expect(reachOf(file("/x", 4).loc, "a", "a")).toBe("direct");
    expect(reachOf(file("/x", 4).loc, "a", "b")).toBe("export");
    expect(reachOf(shm, "a", "b")).toBe("export");
    expect(reachOf({ kind: "cuda", device: 0, handle: new Uint8Array(64), offset: 0, bytes: 4 }, "a", "b")).toBe(
      "unreachable",
    );
    expect(reachOf({ kind: "obj", bucket: "b", key: "k", bytes: 4 }, "a", "b")).toBe("direct");
    expect(reachOf({ kind: "inline", data: new Uint8Array(4) }, "a", "b")).toBe("direct");
    expect(preferredLocation("a", "b")).toBe("obj");
    expect(preferredLocation("a", "a")).toBe("shm");
  });

  it("host ids come from --host-id, then MOEQ_HOST_ID, and must fit a subject token", () => {
    expect(localHostId({ MOEQ_HOST_ID: "env-id" }, ["node", "x", "--host-id", "flag-id"])).toBe("flag-id");
    expect(localHostId({ MOEQ_HOST_ID: "env-id" }, ["node", "x", "--host-id=eq-id"])).toBe("eq-id");
    expect(localHostId({ MOEQ_HOST_ID: "env-id" }, ["node", "x"])).toBe("env-id");
    expect(() => localHostId({ MOEQ_HOST_ID: "a.b" }, [])).toThrow(/host id "a.b"/);
  });
});

describe("a worker on another host", () => {
  it("learns the home host and gets inputs as inline bytes, through the object store when large", async () => {
    const w = await HostTensors.open(bus, { runId, hostId: "worker-1", patienceMs: 5000 });
    expect(w.homeHost).toBe("home");
    expect(w.local).toBe(false);
    const b = await w.readable(file(join(modelDir, "big.bin"), big.byteLength), "big");
    expect(b.loc.kind).toBe("inline");
    expect(sha((b.loc as { data: Uint8Array }).data)).toBe(sha(big));
    const s = await w.readable(file(join(modelDir, "small.bin"), small.byteLength, 24), "small");
    expect(Buffer.from((s.loc as { data: Uint8Array }).data).equals(Buffer.from(small))).toBe(true);
    expect(server.counts.exports).toBeGreaterThanOrEqual(2);
  });

  it("hands outputs back as work-dir files with the same bytes (large through an object, small inline)", async () => {
    const w = await HostTensors.open(bus, { runId, hostId: "worker-1", patienceMs: 5000 });
    const f32 = Float32Array.from({ length: 50_000 }, (_, i) => Math.sin(i));
    const d = await w.output("quant/L0.E1.up_proj.scales", "f32", [250, 200], f32, () => {
      throw new Error("a remote worker never writes locally");
    });
    expect(d.loc).toEqual({
      kind: "file",
      path: join(workDir, "tensors", "quant", "L0.E1.up_proj.scales"),
      offset: 0,
      bytes: 200_000,
    });
    const written = readFileSync(join(workDir, "tensors", "quant", "L0.E1.up_proj.scales"));
    expect(written.equals(Buffer.from(f32.buffer))).toBe(true);
    const codes = await w.output("quant/L0.E1.up_proj.codes", "u8", [10, 100], small, () => undefined);
    expect(readFileSync((codes.loc as { path: string }).path).equals(Buffer.from(small))).toBe(true);
    expect(d.checksum?.hex).toBe(sha(new Uint8Array(f32.buffer)));
  });

  it("on the home host itself reads descriptors as they are and writes outputs directly", async () => {
    const h = HostTensors.home(bus, { runId, hostId: "home", workDir });
    const d = file(join(modelDir, "big.bin"), big.byteLength);
    expect(await h.readable(d, "big")).toBe(d);
    let wrote = "";
    const out = await h.output("quant/x.codes", "u8", [4], new Uint8Array([1, 2, 3, 4]), (p) => {
      wrote = p;
    });
    expect(wrote).toBe(join(workDir, "tensors", "quant", "x.codes"));
    expect(out.loc.kind).toBe("file");
  });
});

describe("the file server refuses, naming the tensor", () => {
  const exportSubject = () => hostSubjects.exportFrom(runId, "home");
  const importSubject = () => hostSubjects.importTo(runId, "home");

  it("files outside the work and model dirs", async () => {
    const r = await ask(exportSubject(), {
      descriptor: file(join(outside, "secret.bin"), small.byteLength),
      source: "L0 weight",
    });
    expect(r.error?.permanent).toBe(true);
    expect(r.error?.message).toMatch(/L0 weight: .*outside the run's allowed roots/);
  });

  it("ranges past the end, wrong sizes and wrong checksums", async () => {
    const past = await ask(exportSubject(), {
      descriptor: file(join(modelDir, "small.bin"), small.byteLength, 100),
      source: "past",
    });
    expect(past.error?.message).toMatch(/past: .*past the end/);
    const wrong = await ask(exportSubject(), {
      descriptor: {
        dtype: "f32",
        shape: [3],
        loc: { kind: "file", path: join(modelDir, "small.bin"), offset: 0, bytes: 8 },
      },
      source: "wrong",
    });
    expect(wrong.error?.message).toMatch(/wrong: descriptor says 8 bytes, f32\[3\] needs 12/);
    const bad = await ask(exportSubject(), {
      descriptor: { ...file(join(modelDir, "big.bin"), 10), checksum: { algo: "sha256", hex: "00".repeat(32) } },
      source: "sum",
    });
    expect(bad.error?.tag).toBe("ChecksumMismatch");
  });

  it("cuda and shm locations, and messages that are not requests", async () => {
    const cuda = await ask(exportSubject(), {
      descriptor: {
        dtype: "u8",
        shape: [4],
        loc: { kind: "cuda", device: 0, handle: new Uint8Array(64), offset: 0, bytes: 4 },
      },
      source: "gpu",
    });
    expect(cuda.error?.message).toMatch(/gpu: a cuda location cannot be exported/);
    const m = await bus.nc.request(exportSubject(), new Uint8Array([0xc1]), { timeout: 5000 });
    const r = Result.getOrThrow(unpackValue(m.data, "reply")) as { error?: { tag: string } };
    expect(r.error?.tag).toBe("MalformedMessage");
  });

  it("imports that would land outside tensors/, carry no checksum, or do not match it", async () => {
    const inline = (data: Uint8Array, hex?: string): TensorDescriptor => ({
      dtype: "u8",
      shape: [data.byteLength],
      loc: { kind: "inline", data },
      ...(hex ? { checksum: { algo: "sha256" as const, hex } } : {}),
    });
    for (const path of ["../run.json", "/etc/passwd", "quant/../../escape"]) {
      const r = await ask(importSubject(), { descriptor: inline(small, sha(small)), path, source: "out" });
      expect(r.error?.message, path).toMatch(/must be relative and stay under tensors/);
    }
    expect(existsSync(join(workDir, "run.json"))).toBe(false);
    const none = await ask(importSubject(), { descriptor: inline(small), path: "quant/a", source: "nosum" });
    expect(none.error?.message).toMatch(/nosum: an imported tensor needs a sha256 checksum/);
    const wrong = await ask(importSubject(), {
      descriptor: inline(small, "11".repeat(32)),
      path: "quant/b",
      source: "badsum",
    });
    expect(wrong.error?.tag).toBe("ChecksumMismatch");
    expect(existsSync(join(workDir, "tensors", "quant", "b"))).toBe(false);
    const foreign = await ask(importSubject(), {
      descriptor: {
        dtype: "u8",
        shape: [4],
        loc: { kind: "obj", bucket: "moeq_other", key: "k", bytes: 4 },
        checksum: { algo: "sha256", hex: "00".repeat(32) },
      },
      path: "quant/c",
      source: "foreign",
    });
    expect(foreign.error?.message).toMatch(/foreign: bucket moeq_other is not this run's/);
  });

  it("a worker whose home host never answers gets a transient HostUnreachable", async () => {
    await expect(HostTensors.open(bus, { runId: freshRunId(), hostId: "w", patienceMs: 1500 })).rejects.toMatchObject({
      _tag: "HostUnreachable",
    });
  });
});
