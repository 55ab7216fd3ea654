// POSIX shared memory segments (owner: store)
// biome-ignore lint/suspicious/noEmptyInterface: filled in by the kernel family's owner
export interface ShmKernels {}
