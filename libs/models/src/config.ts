// Typed reads of config.json fields with defaults; a wrong type is a ModelConfigError naming the field.
import { ModelConfigError } from "./errors.ts";

export type RawConfig = Readonly<Record<string, unknown>>;

/**
 * Upper bounds on count fields, checked as they are read: specs hold per-layer and per-expert
 * objects, so a few bytes of config (`num_hidden_layers: 1e9`) would otherwise exhaust memory before
 * any tensor is looked at. Far above every published model (≤ 126 layers, ≤ 384 experts, ≤ 128 heads).
 */
const COUNT_LIMITS: readonly [RegExp, number][] = [
  [/^(num_hidden_layers|n_layers|num_layers)$/, 4096],
  [/experts|expert$/, 65536],
  [/heads$/, 65536],
];

const countLimit = (key: string): number | undefined => COUNT_LIMITS.find(([re]) => re.test(key))?.[1];

export class ConfigReader {
  constructor(
    readonly raw: RawConfig,
    readonly source: string,
  ) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  private fail(key: string, want: string): never {
    throw new ModelConfigError({
      field: key,
      message: `${this.source}: field '${key}' must be ${want}, got ${JSON.stringify(this.raw[key])}`,
    });
  }

  num(key: string, dflt?: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(key, "a number (required)");
      return dflt;
    }
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "a finite number");
    return v;
  }

  int(key: string, dflt?: number, min = 0): number {
    const v = this.num(key, dflt);
    if (!Number.isInteger(v) || v < min) this.fail(key, `an integer >= ${min}`);
    this.checkCount(key, v);
    return v;
  }

  private checkCount(key: string, v: number): void {
    const max = countLimit(key);
    if (max !== undefined && v > max)
      this.fail(
        key,
        `at most ${max} (no model has more; a larger count would exhaust memory before any tensor is read)`,
      );
  }

  optNum(key: string): number | undefined {
    return this.has(key) ? this.num(key) : undefined;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") this.fail(key, "a boolean");
    return v;
  }

  str(key: string, dflt?: string): string {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(key, "a string (required)");
      return dflt;
    }
    if (typeof v !== "string") this.fail(key, "a string");
    return v;
  }

  intList(key: string, dflt: readonly number[]): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [...dflt];
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) this.fail(key, "a list of integers");
    return v as number[];
  }

  /** An int, or a per-layer list of ints (Hunyuan's moe_topk, num_shared_expert...). */
  perLayerInt(key: string, layer: number, dflt?: number): number {
    const v = this.raw[key];
    if (Array.isArray(v)) {
      const x = v[layer];
      if (!Number.isInteger(x)) this.fail(key, `an integer or a list of integers with an entry for layer ${layer}`);
      this.checkCount(key, x as number);
      return x as number;
    }
    return this.int(key, dflt);
  }

  obj(key: string): ConfigReader | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "an object");
    return new ConfigReader(v as RawConfig, `${this.source}.${key}`);
  }
}
