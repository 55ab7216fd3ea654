// Module and tensor naming shared by the formats.

/** "<module>.weight" → "<module>"; undefined for other tensors. */
export const moduleOfWeight = (tensor: string): string | undefined =>
  tensor.endsWith(".weight") ? tensor.slice(0, -".weight".length) : undefined;

const isEmbedding = (module: string) => /(^|\.)(embed_tokens|embeddings?|wte|wpe|word_embeddings)$/.test(module);

/** Linear-like modules among unquantized tensors: 2-D weights that are not embeddings. */
export const deriveUnquantizedModules = (
  passthrough: ReadonlyMap<string, { readonly shape: readonly number[] }>,
): string[] => {
  const out: string[] = [];
  for (const [name, t] of passthrough) {
    const m = moduleOfWeight(name);
    if (m !== undefined && t.shape.length === 2 && !isEmbedding(m)) out.push(m);
  }
  return out.sort();
};

/** Per-expert module name as vLLM's FusedMoE.make_expert_params_mapping expects. */
export const EXPERT_MODULE = /^(?<prefix>.*\.experts)\.(?<expert>\d+)\.(?<proj>gate_proj|up_proj|down_proj)$/;

export const parseExpertModule = (
  name: string,
): { prefix: string; expert: number; proj: "gate_proj" | "up_proj" | "down_proj" } | undefined => {
  const m = EXPERT_MODULE.exec(name);
  if (!m?.groups) return undefined;
  return {
    prefix: m.groups.prefix!,
    expert: Number(m.groups.expert),
    proj: m.groups.proj as "gate_proj" | "up_proj" | "down_proj",
  };
};
