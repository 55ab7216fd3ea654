// mmap of files as external ArrayBuffers (owner: safetensors)
// biome-ignore lint/suspicious/noEmptyInterface: filled in by the kernel family's owner
export interface IoKernels {}
