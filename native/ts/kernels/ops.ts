// elementwise, norms, activations, softmax, top-k, RoPE (owner: models)
// biome-ignore lint/suspicious/noEmptyInterface: filled in by the kernel family's owner
export interface OpsKernels {}
