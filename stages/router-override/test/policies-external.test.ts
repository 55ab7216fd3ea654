// The external policy protocol against a real separate process (test/custom-policy/policy.mjs)
// and against processes that break it.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Routing, RoutingSpec } from "@moeq/models";
import { afterEach, describe, expect, it } from "vitest";
import { externalPolicy } from "../src/external-policy.ts";
import { type CalibrationPolicy, mixPolicy } from "../src/policies.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const script = join(root, "test", "custom-policy", "policy.mjs");
const spec: RoutingSpec = { kind: "softmax_topk", topK: 2, normTopK: true };

function routing(rows: number, E: number, seed: number): Routing {
  let s = seed;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  const indices = new Int32Array(rows * 2);
  for (let t = 0; t < rows; t++) {
    const a = Math.floor(next() * E);
    indices[t * 2] = a;
    indices[t * 2 + 1] = (a + 1 + Math.floor(next() * (E - 1))) % E;
  }
  const logits = Float32Array.from({ length: rows * E }, () => next() * 4 - 2);
  return {
    rows,
    numExperts: E,
    topK: 2,
    logits,
    scores: new Float32Array(0),
    indices,
    weights: new Float32Array(rows * 2).fill(0.5),
  };
}

const opened: CalibrationPolicy[] = [];
const open = (cmd: string, o = {}) => {
  const p = externalPolicy(cmd, { scratchDir: mkdtempSync(join(tmpdir(), "moeq-policy-test-")), ...o });
  opened.push(p);
  return p;
};
afterEach(async () => {
  for (const p of opened.splice(0)) await p.close?.();
});

describe("external policy process", () => {
  it("answers every layer like the built-in mix:0.25 it re-implements (odd sizes, one process for all layers)", async () => {
    const lines: string[] = [];
    const p = open(`${script} --floor 0.25`, { log: (l: string) => lines.push(l) });
    for (const [L, rows, E] of [
      [0, 37, 5],
      [1, 1, 3],
      [2, 129, 17],
    ] as const) {
      const r = routing(rows, E, L + 1);
      const got = await p.weights(r, { layer: L, spec });
      expect([...got]).toEqual([...(mixPolicy(0.25).weights(r, { layer: L, spec }) as Float32Array)]);
    }
    // stderr is its own pipe: its lines may trail the answers a little
    await expect
      .poll(() => lines.join("\n"), { timeout: 10_000 })
      .toMatch(/\[policy\] layer 2: 129 tokens × 17 experts \(softmax_topk\)/);
  }, 60_000);

  it("a short answer file is a PolicyError naming the file and the expected size", async () => {
    const p = open(`${script} --bad-size`);
    await expect(p.weights(routing(9, 4, 3), { layer: 5, spec })).rejects.toMatchObject({
      _tag: "PolicyError",
      message: expect.stringMatching(/L5\.out\.bin: 140 bytes .* expected 9×4 f32 = 144/),
    });
  }, 60_000);

  it("a process that does not speak the protocol, or dies, is a PolicyError naming it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "moeq-policy-bad-"));
    const wrong = join(dir, "wrong.mjs");
    writeFileSync(
      wrong,
      `process.stdout.write(JSON.stringify({ protocol: "other/9" }) + "\\n"); process.stdin.on("end", () => process.exit(0)).resume();`,
    );
    await expect(open(wrong).weights(routing(3, 3, 1), { layer: 0, spec })).rejects.toMatchObject({
      _tag: "PolicyError",
      message: expect.stringMatching(/speaks "other\/9", expected moeq-policy\/1/),
    });
    const dies = join(dir, "dies.mjs");
    writeFileSync(
      dies,
      `process.stdout.write(JSON.stringify({ protocol: "moeq-policy/1" }) + "\\n"); process.stdin.once("data", () => process.exit(3));`,
    );
    await expect(open(dies).weights(routing(3, 3, 1), { layer: 0, spec })).rejects.toMatchObject({
      _tag: "PolicyError",
      message: expect.stringMatching(/exited \(code 3\)/),
    });
    await expect(
      open(join(dir, "missing-binary-xyz")).weights(routing(3, 3, 1), { layer: 0, spec }),
    ).rejects.toMatchObject({ _tag: "PolicyError" });
  }, 60_000);

  it("a process that never says hello is a PolicyError at the hello timeout and is killed, not left behind", async () => {
    // a sleep with an argument no other process has, so /proc finds exactly this one
    const secs = `${900 + Math.floor(Math.random() * 1000)}.${process.pid}`;
    await expect(
      open(`/bin/sleep ${secs}`, { helloTimeoutMs: 300 }).weights(routing(3, 3, 1), { layer: 0, spec }),
    ).rejects.toMatchObject({ _tag: "PolicyError", message: expect.stringMatching(/hello line within 0.3 s/) });
    const sleeping = () =>
      readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .filter((d) => {
          try {
            return readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").includes(secs);
          } catch {
            return false;
          }
        });
    const deadline = Date.now() + 3000;
    while (sleeping().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(sleeping()).toEqual([]);
  }, 30_000);

  it("an error answer is passed on with the layer", async () => {
    const dir = mkdtempSync(join(tmpdir(), "moeq-policy-err-"));
    const f = join(dir, "err.mjs");
    writeFileSync(
      f,
      `import { createInterface } from "node:readline"; process.stdout.write(JSON.stringify({ protocol: "moeq-policy/1" }) + "\\n");
       for await (const l of createInterface({ input: process.stdin })) process.stdout.write(JSON.stringify({ id: JSON.parse(l).id, ok: false, error: "no idea" }) + "\\n");`,
    );
    await expect(open(f).weights(routing(3, 3, 1), { layer: 7, spec })).rejects.toMatchObject({
      message: expect.stringMatching(/failed on layer 7: no idea/),
    });
  }, 60_000);
});
