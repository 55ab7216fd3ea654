// The model's own tokenizer (tokenizer.json), run by @huggingface/tokenizers, a JS port that
// reproduces the Rust `tokenizers` ids (checked sample by sample in test/tokenizer.test.ts).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Effect } from "effect";
import { TokenizerLoadError } from "./errors.ts";

export interface TextTokenizer {
  readonly modelDir: string;
  /** Size of the id space (model vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** The token that separates documents (the config's eos token, e.g. `<|endoftext|>`). */
  readonly separatorToken: string;
  readonly separatorId: number;
  /** sha256 of tokenizer.json and tokenizer_config.json: identifies the id mapping (cache keys). */
  readonly fingerprint: string;
  /** Ids as Hugging Face `tokenizer(text, add_special_tokens=False)` gives them. */
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
}

function readJson(
  path: string,
  optional: boolean,
  hash: ReturnType<typeof createHash>,
): Record<string, unknown> | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new TokenizerLoadError({ path, reason: (e as Error).message });
  }
  hash.update(raw).update("\u0000");
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (e) {
    throw new TokenizerLoadError({ path, reason: `not valid JSON (${(e as Error).message})` });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new TokenizerLoadError({ path, reason: "expected a JSON object" });
  return parsed as Record<string, unknown>;
}

function tokenName(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "object" && value !== null && typeof (value as { content?: unknown }).content === "string")
    return (value as { content: string }).content;
  return undefined;
}

function build(modelDir: string): TextTokenizer {
  const jsonPath = join(modelDir, "tokenizer.json");
  const hash = createHash("sha256");
  const tokenizerJson = readJson(jsonPath, false, hash)!;
  const model = tokenizerJson.model as { vocab?: unknown } | undefined;
  if (typeof model !== "object" || model === null || typeof model.vocab !== "object" || model.vocab === null)
    throw new TokenizerLoadError({ path: jsonPath, reason: "field model.vocab is missing" });
  const config = readJson(join(modelDir, "tokenizer_config.json"), true, hash) ?? {};

  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (e) {
    throw new TokenizerLoadError({ path: jsonPath, reason: `unsupported tokenizer (${(e as Error).message})` });
  }

  const separatorToken = tokenName(config.eos_token) ?? "<|endoftext|>";
  const separatorId = tokenizer.token_to_id(separatorToken);
  if (separatorId === undefined)
    throw new TokenizerLoadError({
      path: jsonPath,
      reason: `separator token ${separatorToken} is not in the vocabulary`,
    });

  let maxId = -1;
  for (const id of tokenizer.get_vocab(true).values()) maxId = Math.max(maxId, id);

  return {
    modelDir,
    vocabSize: maxId + 1,
    separatorToken,
    separatorId,
    fingerprint: hash.digest("hex"),
    encode: (text) => Int32Array.from(tokenizer.encode(text, { add_special_tokens: false }).ids),
    // The JS port refuses an empty id list; the empty text is its decoding.
    decode: (ids) => (ids.length === 0 ? "" : tokenizer.decode(Array.from(ids))),
  };
}

/** Load `<modelDir>/tokenizer.json` (+ tokenizer_config.json when present). */
export function loadTokenizer(modelDir: string): Effect.Effect<TextTokenizer, TokenizerLoadError> {
  return Effect.try({
    try: () => build(modelDir),
    catch: (e) =>
      e instanceof TokenizerLoadError
        ? e
        : new TokenizerLoadError({ path: join(modelDir, "tokenizer.json"), reason: String(e) }),
  });
}
