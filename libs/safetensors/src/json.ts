// A strict JSON parser for safetensors headers. JSON.parse cannot be used: it silently keeps the
// last of two equal keys (a tensor named twice must be an error), turns large integers into
// inexact doubles and has no nesting limit. Numbers stay as their source text so the caller can
// insist on unsigned integers, as serde's usize does.

export type Json = null | boolean | string | JsonNumber | Json[] | JsonObject;
export interface JsonNumber {
  readonly kind: "number";
  readonly text: string;
}
export interface JsonObject {
  readonly kind: "object";
  readonly entries: Array<[string, Json]>;
}

export class JsonSyntaxError extends Error {
  readonly reason: string;
  readonly position: number;
  readonly duplicateKey: string | undefined;
  constructor(reason: string, position: number, duplicateKey?: string) {
    super(`${reason} at character ${position}`);
    this.reason = reason;
    this.position = position;
    this.duplicateKey = duplicateKey;
  }
}

const MAX_DEPTH = 128; // serde_json's recursion limit

export function parseJson(s: string): Json {
  let i = 0;
  const fail = (reason: string, dup?: string): never => {
    throw new JsonSyntaxError(reason, i, dup);
  };
  const ws = () => {
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const hex4 = (): number => {
    const h = s.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape");
    i += 4;
    return Number.parseInt(h, 16);
  };
  const str = (): string => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= s.length) fail("unterminated string");
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        out += s.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(start, i);
      i++;
      const e = s[i++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const u = hex4();
          if (u >= 0xdc00 && u <= 0xdfff) fail("lone trailing surrogate in \\u escape");
          if (u >= 0xd800 && u <= 0xdbff) {
            if (s[i] !== "\\" || s[i + 1] !== "u") fail("lone leading surrogate in \\u escape");
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail("lone leading surrogate in \\u escape");
            out += String.fromCharCode(u, lo);
          } else out += String.fromCharCode(u);
          break;
        }
        default:
          fail("invalid escape");
      }
      start = i;
    }
  };
  const num = (): JsonNumber => {
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(s.slice(i, i + 400));
    if (!m) return fail("invalid number");
    i += m[0].length;
    return { kind: "number", text: m[0] };
  };
  const lit = (word: string, v: Json): Json => {
    if (s.startsWith(word, i)) {
      i += word.length;
      return v;
    }
    return fail("expected value");
  };
  const value = (depth: number): Json => {
    if (depth > MAX_DEPTH) fail("recursion limit exceeded");
    ws();
    const c = s[i];
    if (c === "{") {
      i++;
      const entries: Array<[string, Json]> = [];
      const seen = new Set<string>();
      ws();
      if (s[i] === "}") {
        i++;
        return { kind: "object", entries };
      }
      for (;;) {
        ws();
        if (s[i] !== '"') fail("expected object key");
        const k = str();
        if (seen.has(k)) fail(`duplicate key "${k}"`, k);
        seen.add(k);
        ws();
        if (s[i] !== ":") fail("expected ':'");
        i++;
        entries.push([k, value(depth + 1)]);
        ws();
        if (s[i] === ",") {
          i++;
          continue;
        }
        if (s[i] === "}") {
          i++;
          return { kind: "object", entries };
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: Json[] = [];
      ws();
      if (s[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (s[i] === ",") {
          i++;
          continue;
        }
        if (s[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === "t") return lit("true", true);
    if (c === "f") return lit("false", false);
    if (c === "n") return lit("null", null);
    if (c === "-" || (c >= "0" && c <= "9")) return num();
    return fail(i >= s.length ? "unexpected end of input" : "expected value");
  };
  const v = value(0);
  ws();
  if (i < s.length) fail("trailing characters");
  return v;
}

export const isObject = (v: Json): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v) && v.kind === "object";
export const isNumber = (v: Json): v is JsonNumber =>
  typeof v === "object" && v !== null && !Array.isArray(v) && v.kind === "number";
