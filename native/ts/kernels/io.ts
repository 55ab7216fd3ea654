// mmap of files as external ArrayBuffers (owner: safetensors). Implemented in ../../src/io.cc.
export interface IoKernels {
  /** Maps a whole regular file read-only (MAP_SHARED) without copying; the mapping is released
   * when the buffer is garbage-collected or by munmapFile. Throws with the path on failure. */
  mmapFile(path: string): ArrayBuffer;
  /** Detaches the buffer (every view becomes empty) and unmaps it now. False if not a live mapping. */
  munmapFile(buffer: ArrayBuffer): boolean;
  /** Bytes currently mapped by mmapFile (for leak checks in tests). */
  mappedBytes(): number;
}
