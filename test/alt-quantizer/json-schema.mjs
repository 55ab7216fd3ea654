// A small JSON Schema (2020-12 subset) validator: exactly the keywords schemas/*.json use
// ($ref into $defs, type, enum, properties, required, additionalProperties, items, anyOf,
// minimum, maximum, pattern, x-msgpack bin). Returns a list of "path: problem" strings.
const typeOf = (v) =>
  v === null
    ? "null"
    : Array.isArray(v)
      ? "array"
      : v instanceof Uint8Array
        ? "bytes"
        : Number.isInteger(v)
          ? "integer"
          : typeof v;

export function validator(root) {
  const resolve = (ref) => {
    if (!ref.startsWith("#/$defs/")) throw new Error(`unsupported $ref ${ref}`);
    const def = root.$defs[ref.slice(8)];
    if (!def) throw new Error(`unknown $ref ${ref}`);
    return def;
  };
  const check = (schema, v, path, errors) => {
    if (schema.$ref) return check(resolve(schema.$ref), v, path, errors);
    if (schema["x-msgpack"] === "bin") {
      if (!(v instanceof Uint8Array)) errors.push(`${path}: expected bytes (msgpack bin)`);
      return;
    }
    if (schema.anyOf) {
      const ok = schema.anyOf.some((s) => {
        const e = [];
        check(s, v, path, e);
        return e.length === 0;
      });
      if (!ok) errors.push(`${path}: matches none of the alternatives`);
      return;
    }
    const t = typeOf(v);
    if (schema.type) {
      const want = Array.isArray(schema.type) ? schema.type : [schema.type];
      const fits = want.some((w) => w === t || (w === "number" && (t === "integer" || t === "number")));
      if (!fits) return void errors.push(`${path}: expected ${want.join("|")}, got ${t}`);
    }
    if (schema.enum && !schema.enum.some((e) => e === v))
      errors.push(`${path}: ${JSON.stringify(v)} not in ${JSON.stringify(schema.enum)}`);
    if (typeof v === "number") {
      if (schema.minimum !== undefined && v < schema.minimum) errors.push(`${path}: ${v} < ${schema.minimum}`);
      if (schema.maximum !== undefined && v > schema.maximum) errors.push(`${path}: ${v} > ${schema.maximum}`);
    }
    if (typeof v === "string" && schema.pattern && !new RegExp(schema.pattern).test(v))
      errors.push(`${path}: does not match ${schema.pattern}`);
    if (t === "array" && schema.items)
      for (const [i, x] of v.entries()) check(schema.items, x, `${path}[${i}]`, errors);
    if (t === "object") {
      for (const k of schema.required ?? []) if (!(k in v)) errors.push(`${path}.${k}: required`);
      for (const [k, x] of Object.entries(v)) {
        if (schema.properties?.[k]) check(schema.properties[k], x, `${path}.${k}`, errors);
        else if (schema.additionalProperties === false) errors.push(`${path}.${k}: not allowed`);
        else if (typeof schema.additionalProperties === "object")
          check(schema.additionalProperties, x, `${path}.${k}`, errors);
      }
    }
  };
  return (value, name = "$") => {
    const errors = [];
    check(root, value, name, errors);
    return errors;
  };
}
