// The "mid" architectures (docs/architectures.md): fused / packed experts, biases, unusual
// activations and routers, sinks, chunked / NoPE attention, multipliers, LongRoPE.
import type { Architecture } from "../arch.ts";
import { dbrx } from "./dbrx.ts";
import { gpt_oss } from "./gpt_oss.ts";
import { granitemoe } from "./granitemoe.ts";
import { llama4_text } from "./llama4_text.ts";
import { phimoe } from "./phimoe.ts";

export const MID_ARCHITECTURES: readonly Architecture[] = [gpt_oss, llama4_text, dbrx, granitemoe, phimoe];
