// prefill attention variants (owner: models)
// biome-ignore lint/suspicious/noEmptyInterface: filled in by the kernel family's owner
export interface AttentionKernels {}
