import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

// /dev/shm is where Linux keeps POSIX shm objects: reading it with fs is an independent view.
// Not "moeq-…": the store sweeps moeq-* segments that have no live run owner.
const prefix = `moeqtest-native${process.pid}`;
const made: string[] = [];
const name = (k: string) => {
  const n = `${prefix}-${k}`;
  made.push(n);
  return n;
};
afterAll(() => {
  for (const n of made) native.shmUnlink(n);
});

describe("shm segments", () => {
  it.each([1, 7, 4095, 4097, 65_537, 1_000_003])("create/fill/open round trip, %i bytes", (bytes) => {
    const n = name(`rt${bytes}`);
    const src = randomBytes(bytes);
    const w = new Uint8Array(native.shmCreate(n, bytes));
    expect(w.byteLength).toBe(bytes);
    w.set(src);
    expect(readFileSync(`/dev/shm/${n}`).equals(src)).toBe(true);
    const r = new Uint8Array(native.shmOpen(n));
    expect(r.byteLength).toBe(bytes);
    expect(Buffer.from(r.buffer).equals(src)).toBe(true);
  });

  it("a reader's stray write stays private (copy-on-write) and does not crash", () => {
    const n = name("cow");
    const w = new Uint8Array(native.shmCreate(n, 10));
    w.fill(5);
    const r = new Uint8Array(native.shmOpen(n));
    r[3] = 99;
    expect(w[3]).toBe(5);
    expect(readFileSync(`/dev/shm/${n}`)[3]).toBe(5);
    const shared = new Uint8Array(native.shmOpen(n, true));
    shared[4] = 42;
    expect(w[4]).toBe(42);
  });

  it("refuses existing names, bad names and missing segments; unlink reports absence", () => {
    const n = name("dup");
    native.shmCreate(n, 16);
    expect(() => native.shmCreate(n, 16)).toThrow(/File exists/);
    expect(() => native.shmCreate("../etc", 16)).toThrow(/invalid segment name/);
    expect(() => native.shmCreate("a/b", 16)).toThrow(/invalid segment name/);
    expect(() => native.shmOpen(`${prefix}-missing`)).toThrow(/No such file/);
    expect(native.shmUnlink(n)).toBe(true);
    expect(existsSync(`/dev/shm/${n}`)).toBe(false);
    expect(native.shmUnlink(n)).toBe(false);
  });

  it("a zero-byte segment maps to an empty buffer", () => {
    const n = name("zero");
    expect(native.shmCreate(n, 0).byteLength).toBe(0);
    expect(native.shmOpen(n).byteLength).toBe(0);
  });
});

describe("file ranges", () => {
  const dir = mkdtempSync(join(tmpdir(), "moeq-map-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const data = randomBytes(3 * 4096 + 123);
  const file = join(dir, "x.bin");
  writeFileSync(file, data);

  it.each([
    [0, 0],
    [0, data.length],
    [1, 17],
    [4095, 3],
    [4096, 4096],
    [5000, data.length - 5000],
    [data.length, 0],
  ])("maps [%i, +%i) equal to the file's bytes", (offset, bytes) => {
    const v = new Uint8Array(native.mapFileRange(file, offset, bytes));
    expect(Buffer.from(v).equals(data.subarray(offset, offset + bytes))).toBe(true);
    if (bytes > 0) {
      v[0] ^= 0xff; // private copy: the file is untouched
      expect(readFileSync(file).equals(data)).toBe(true);
    }
  });

  it("refuses ranges past the end, directories and missing files", () => {
    expect(() => native.mapFileRange(file, data.length - 2, 3)).toThrow(/past the end/);
    expect(() => native.mapFileRange(file, -1, 3)).toThrow(/negative/);
    expect(() => native.mapFileRange(dir, 0, 1)).toThrow(/not a regular file/);
    expect(() => native.mapFileRange(join(dir, "nope"), 0, 1)).toThrow(/No such file/);
  });
});

describe("mapping region", () => {
  const page = 4096;
  const region = native.shmRegion(2 ** 36);
  it("returns the same region on every call and reads zeros where nothing is mapped", () => {
    expect(native.shmRegion(2 ** 36)).toBe(region);
    expect(region.byteLength).toBe(2 ** 36);
    expect(new Uint8Array(region, 2 ** 35, 64).every((b) => b === 0)).toBe(true);
  });

  it.each([1, 4095, 4096, 70_001])(
    "maps segments of %i bytes into slots, private or shared, and unmaps to zeros",
    (bytes) => {
      const n = name(`region${bytes}`);
      native.shmCreateUnmapped(n, bytes);
      const at = page * 16 * bytes;
      expect(native.shmMapAt(n, at, true, bytes)).toBe(bytes);
      const w = new Uint8Array(region, at, bytes);
      const src = randomBytes(bytes);
      w.set(src);
      expect(readFileSync(`/dev/shm/${n}`).equals(src)).toBe(true);
      const at2 = at + Math.ceil(bytes / page) * page + page;
      native.shmMapAt(n, at2, false, bytes);
      const r = new Uint8Array(region, at2, bytes);
      expect(Buffer.from(r).equals(src)).toBe(true);
      r[0] ^= 1; // private slot: not visible to the shared one
      expect(w[0]).toBe(src[0]);
      native.shmUnmapAt(at2, bytes);
      expect(r.every((b) => b === 0)).toBe(true);
      native.shmUnmapAt(at, bytes);
      expect(readFileSync(`/dev/shm/${n}`).equals(src)).toBe(true);
    },
  );

  it("refuses unaligned slots and slots past the region; maps a prefix into a smaller slot", () => {
    const n = name("regionbad");
    native.shmCreateUnmapped(n, 10_000);
    expect(() => native.shmMapAt(n, 100, false, 10_000)).toThrow(/page aligned/);
    expect(() => native.shmMapAt(n, 2 ** 36 - page, false, 2 ** 20)).toThrow(/past the end of the region/);
    // A smaller slot maps a prefix and still reports the whole size.
    expect(native.shmMapAt(n, 0, false, 4096)).toBe(10_000);
    native.shmUnmapAt(0, 4096);
    expect(() => native.shmUnmapAt(2 ** 36, 1)).toThrow(/past the end/);
  });
});
