// GPTQ inner loop, Hessian accumulation, mixed-dtype GEMM (owner: quant)
// biome-ignore lint/suspicious/noEmptyInterface: filled in by the kernel family's owner
export interface QuantKernels {}
