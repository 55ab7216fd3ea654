// The "hard" architectures (docs/architectures.md): MLA, DSA, hybrid attention, Gated DeltaNet.
import type { Architecture } from "../arch.ts";
import { deepseek_v2 } from "./deepseek_v2.ts";
import { deepseek_v3 } from "./deepseek_v3.ts";
import { deepseek_v32 } from "./deepseek_v32.ts";
import { glm4_moe_lite } from "./glm4_moe_lite.ts";
import { mimo_v2_flash } from "./mimo_v2_flash.ts";
import { qwen3_5_moe_text } from "./qwen3_5_moe_text.ts";
import { qwen3_next } from "./qwen3_next.ts";

export const HARD_ARCHITECTURES: readonly Architecture[] = [
  deepseek_v2,
  deepseek_v3,
  deepseek_v32,
  glm4_moe_lite,
  mimo_v2_flash,
  qwen3_next,
  qwen3_5_moe_text,
];
