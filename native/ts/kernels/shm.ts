// POSIX shared memory segments and read-only file ranges (owner: store). Names are given
// without the leading slash and may only use [A-Za-z0-9._-]. Mappings live until their
// ArrayBuffer is garbage collected; removing a segment (shmUnlink) is the store's job.
export interface ShmKernels {
  /** Creates a new segment of `bytes` (fails if the name exists) and maps it shared, writable. */
  shmCreate(name: string, bytes: number): ArrayBuffer;
  /**
   * Maps a whole existing segment. writable=false (default): a private copy-on-write view, so a
   * stray write neither crashes nor reaches the producer's bytes.
   */
  shmOpen(name: string, writable?: boolean): ArrayBuffer;
  /** Removes the name (existing mappings stay valid); false when it did not exist. */
  shmUnlink(name: string): boolean;
  /** Copy-on-write view of bytes [offset, offset + bytes) of a regular file; RangeError past its end. */
  mapFileRange(path: string, offset: number, bytes: number): ArrayBuffer;
}
