// vLLM fuses gate/up of each expert (w13) and q/k/v of attention into one weight with one
// tensor-level scale (it keeps the max). Shards with different tensor scales would then be
// decoded with the wrong one, so NVFP4 writers refuse them.
import { FormatError } from "./errors.ts";
import { parseExpertModule } from "./module-names.ts";

const fusedKey = (name: string): string | undefined => {
  const e = parseExpertModule(name);
  if (e) return e.proj === "down_proj" ? undefined : `${e.prefix}.${e.expert}.gate_up`;
  const a = /^(.*\.self_attn)\.(q_proj|k_proj|v_proj)$/.exec(name);
  return a ? `${a[1]}.qkv` : undefined;
};

export const checkFusedTensorScales = (
  format: string,
  modules: ReadonlyArray<{ readonly name: string; readonly scale: number }>,
): void => {
  const seen = new Map<string, { name: string; scale: number }>();
  for (const m of modules) {
    const key = fusedKey(m.name);
    if (key === undefined) continue;
    const other = seen.get(key);
    if (other === undefined) seen.set(key, m);
    else if (other.scale !== m.scale) {
      throw new FormatError({
        format,
        reason: `${m.name} has tensor scale ${m.scale} but ${other.name} has ${other.scale}; vLLM fuses them and keeps one — quantize them with a shared global scale`,
      });
    }
  }
};
