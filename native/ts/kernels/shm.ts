// POSIX shared memory segments and read-only file ranges (owner: store). Names are given
// without the leading slash and may only use [A-Za-z0-9._-]. Mappings live until their
// ArrayBuffer is garbage collected; removing a segment (shmUnlink) is the store's job.
export interface ShmKernels {
  /** Creates a new segment of `bytes` (fails if the name exists) and maps it shared, writable. */
  shmCreate(name: string, bytes: number): ArrayBuffer;
  /** Creates a new segment of `bytes` without mapping it (map it with shmMapAt). */
  shmCreateUnmapped(name: string, bytes: number): void;
  /**
   * Maps a whole existing segment. writable=false (default): a private copy-on-write view, so a
   * stray write neither crashes nor reaches the producer's bytes.
   */
  shmOpen(name: string, writable?: boolean): ArrayBuffer;
  /** Removes the name (existing mappings stay valid); false when it did not exist. */
  shmUnlink(name: string): boolean;
  /**
   * The process's mapping region (reserved once, `bytes` a multiple of the page size; later calls
   * return the same buffer). Mapping segments into it avoids a new external ArrayBuffer per open,
   * which makes V8 run a full GC for large tensors. Free space reads as zeros.
   */
  shmRegion(bytes: number): ArrayBuffer;
  /**
   * Maps the first min(size, maxBytes) bytes of a segment at page-aligned region offset `at`
   * (private copy-on-write unless writable) and returns the segment's full size.
   */
  shmMapAt(name: string, at: number, writable: boolean, maxBytes: number): number;
  /** Returns a slot to zero pages; views over it then read zeros. */
  shmUnmapAt(at: number, bytes: number): void;
  /** Copy-on-write view of bytes [offset, offset + bytes) of a regular file; RangeError past its end. */
  mapFileRange(path: string, offset: number, bytes: number): ArrayBuffer;
}
