// Slots of the process's mapping region (see native shmRegion): a segment opened here costs an
// mmap and a Uint8Array view, not a new ArrayBuffer (which, for large tensors, forces V8 into a
// full GC and breaks the store's millisecond handoff). Slots are page aligned with a guard page
// between them; freed slots read as zeros and are reused first-fit once the region is used up.
import { native } from "@moeq/native";

const PAGE = 4096;
const DEFAULT_REGION = 2 ** 44; // 16 TiB of address space, no memory until mapped

export interface Slot {
  readonly at: number;
  readonly size: number;
}

class Region {
  private next = 0;
  private readonly free: Slot[] = [];
  constructor(readonly buffer: ArrayBuffer) {}

  take(bytes: number): Slot | undefined {
    const size = Math.ceil(Math.max(bytes, 1) / PAGE) * PAGE + PAGE;
    if (this.next + size <= this.buffer.byteLength) {
      const s = { at: this.next, size };
      this.next += size;
      return s;
    }
    const i = this.free.findIndex((f) => f.size >= size);
    return i < 0 ? undefined : this.free.splice(i, 1)[0];
  }

  give(s: Slot): void {
    native.shmUnmapAt(s.at, s.size);
    this.free.push(s);
  }
}

let region: Region | null | undefined;

function getRegion(): Region | null {
  if (region === undefined) {
    try {
      const bytes = Number(process.env.MOEQ_SHM_REGION_BYTES ?? DEFAULT_REGION);
      region = new Region(native.shmRegion(bytes));
    } catch {
      region = null; // address space limited (ulimit -v): fall back to one ArrayBuffer per open
    }
  }
  return region;
}

export interface Mapped {
  /** The first min(size, maxBytes) bytes of the segment. */
  readonly data: Uint8Array;
  /** The segment's full size. */
  readonly size: number;
  /** Unmaps (the slot reads zeros afterwards). Idempotent. */
  unmap(): void;
}

/** Maps (a prefix of at most maxBytes of) a segment, private copy-on-write unless writable. */
export function mapSegment(name: string, writable: boolean, maxBytes: number): Mapped {
  const r = getRegion();
  const slot = r?.take(maxBytes);
  if (!r || !slot) {
    const buf = native.shmOpen(name, writable);
    return { data: new Uint8Array(buf, 0, Math.min(buf.byteLength, maxBytes)), size: buf.byteLength, unmap: () => {} };
  }
  let size: number;
  try {
    size = native.shmMapAt(name, slot.at, writable, maxBytes);
  } catch (e) {
    r.give(slot);
    throw e;
  }
  let mapped = true;
  return {
    data: new Uint8Array(r.buffer, slot.at, Math.min(size, maxBytes)),
    size,
    unmap: () => {
      if (mapped) r.give(slot);
      mapped = false;
    },
  };
}
