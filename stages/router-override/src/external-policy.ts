// A calibration policy in the user's own process, any language: JSON lines over stdio, tensors
// as raw little-endian files (so a layer of 10⁶ tokens × 256 experts is not pushed through JSON).
// Protocol `moeq-policy/1` (docs/calibration.md has the full description):
//   policy → us, first line:  {"protocol":"moeq-policy/1","name":"…"}
//   us → policy, per layer:   {"id":1,"layer":0,"rows":R,"experts":E,"topK":k,"routing":"softmax_topk",
//                              "tensors":{"indices":{"path":…,"dtype":"i32","shape":[R,k]},
//                                         "weights":{…"f32",[R,k]},"probabilities":{…"f32",[R,E]},
//                                         "logits":{…"f32",[R,E]}},
//                              "out":{"path":…,"dtype":"f32","shape":[R,E]}}
//   policy → us:              {"id":1,"ok":true} once `out` is written, or {"id":1,"ok":false,"error":"…"}
// The process is started on the first layer and kept; closing its stdin asks it to exit.
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { spawnTied } from "@moeq/bus";
import type { Routing } from "@moeq/models";
import type { CalibrationPolicy, PolicyInput } from "./policies.ts";
import { PolicyError } from "./policies-errors.ts";
import { routerProbabilities } from "./policies-probability.ts";

export const EXTERNAL_PROTOCOL = "moeq-policy/1";

export interface ExternalPolicyOptions {
  readonly scratchDir?: string;
  readonly log?: (line: string) => void;
  /** how long the process may take to say hello, and to answer one layer */
  readonly helloTimeoutMs?: number;
  readonly answerTimeoutMs?: number;
}

/** `a.mjs x y` runs with this Node; anything else is executed as given (no shell). */
export function externalArgv(command: string): string[] {
  const argv = command.split(/\s+/).filter(Boolean);
  return /\.(m|c)?js$/.test(argv[0] ?? "") ? [process.execPath, ...argv] : argv;
}

function scratchIn(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return mkdtempSync(join(dir, "policy-"));
}

interface Pending {
  resolve: (v: { ok: boolean; error?: string }) => void;
  reject: (e: PolicyError) => void;
}

export function externalPolicy(command: string, o: ExternalPolicyOptions = {}): CalibrationPolicy {
  const name = `external:${command}`;
  const src = `policy process "${command}"`;
  let proc: ChildProcess | undefined;
  let ready: Promise<void> | undefined;
  let dead: PolicyError | undefined;
  let nextId = 1;
  let dir: string | undefined;
  const pending = new Map<number, Pending>();

  const fail = (e: PolicyError) => {
    dead ??= e;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };

  const start = () => {
    const argv = externalArgv(command);
    dir = o.scratchDir ? scratchIn(o.scratchDir) : mkdtempSync(join(tmpdir(), "moeq-policy-"));
    // tied: the policy process dies with this stage however the stage dies
    const p = spawnTied(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] }, "SIGKILL");
    proc = p;
    createInterface({ input: p.stderr! }).on("line", (l) => o.log?.(`[policy] ${l}`));
    const lines = createInterface({ input: p.stdout! });
    ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        const e = new PolicyError({
          source: src,
          message: `${src} did not send its ${EXTERNAL_PROTOCOL} hello line within ${(o.helloTimeoutMs ?? 30_000) / 1000} s`,
        });
        fail(e);
        reject(e);
        // a process that does not speak the protocol is of no further use: it must not linger
        p.kill("SIGKILL");
      }, o.helloTimeoutMs ?? 30_000);
      let hello = false;
      lines.on("line", (line) => {
        let msg: { protocol?: string; id?: number; ok?: boolean; error?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          return fail(
            new PolicyError({ source: src, message: `${src} wrote a line that is not JSON: ${line.slice(0, 200)}` }),
          );
        }
        if (!hello) {
          clearTimeout(t);
          if (msg.protocol !== EXTERNAL_PROTOCOL) {
            const e = new PolicyError({
              source: src,
              message: `${src} speaks ${JSON.stringify(msg.protocol)}, expected ${EXTERNAL_PROTOCOL}`,
            });
            fail(e);
            return reject(e);
          }
          hello = true;
          return resolve();
        }
        const w = typeof msg.id === "number" ? pending.get(msg.id) : undefined;
        if (!w)
          return fail(
            new PolicyError({
              source: src,
              message: `${src} answered an unknown request id ${JSON.stringify(msg.id)}`,
            }),
          );
        pending.delete(msg.id as number);
        w.resolve({ ok: msg.ok === true, ...(msg.error ? { error: String(msg.error) } : {}) });
      });
      p.on("error", (e) => {
        const err = new PolicyError({ source: src, message: `${src} could not start: ${e.message}` });
        fail(err);
        reject(err);
      });
      p.on("exit", (code, signal) => {
        clearTimeout(t);
        const err = new PolicyError({ source: src, message: `${src} exited (${signal ?? `code ${code}`})` });
        fail(err);
        reject(err);
      });
    });
    // an unread rejection before the first request is not an unhandled error
    ready.catch(() => {});
  };

  const ask = (req: Record<string, unknown>, timeoutMs: number) =>
    new Promise<{ ok: boolean; error?: string }>((resolve, reject) => {
      if (dead) return reject(dead);
      const id = nextId++;
      const t = setTimeout(() => {
        pending.delete(id);
        const e = new PolicyError({
          source: src,
          message: `${src} did not answer layer ${req.layer} within ${timeoutMs / 1000} s`,
        });
        fail(e);
        reject(e);
        proc?.kill("SIGKILL");
      }, timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      proc!.stdin!.write(`${JSON.stringify({ id, ...req })}\n`);
    });

  return {
    name,
    async weights(r: Routing, i: PolicyInput) {
      if (!proc) start();
      await ready;
      const R = r.rows;
      const E = r.numExperts;
      const k = r.topK;
      const base = join(dir!, `L${i.layer}`);
      const file = (n: string, data: ArrayBufferView) => {
        const path = `${base}.${n}.bin`;
        writeFileSync(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        return path;
      };
      const tensors: Record<string, { path: string; dtype: string; shape: number[] }> = {
        indices: { path: file("indices", r.indices), dtype: "i32", shape: [R, k] },
        weights: { path: file("weights", r.weights), dtype: "f32", shape: [R, k] },
        probabilities: { path: file("probabilities", routerProbabilities(r, i.spec)), dtype: "f32", shape: [R, E] },
      };
      if (r.logits.length === R * E) tensors.logits = { path: file("logits", r.logits), dtype: "f32", shape: [R, E] };
      const out = `${base}.out.bin`;
      rmSync(out, { force: true });
      try {
        const a = await ask(
          {
            layer: i.layer,
            rows: R,
            experts: E,
            topK: k,
            routing: i.spec.kind,
            tensors,
            out: { path: out, dtype: "f32", shape: [R, E] },
          },
          o.answerTimeoutMs ?? 600_000,
        );
        if (!a.ok)
          throw new PolicyError({
            source: src,
            message: `${src} failed on layer ${i.layer}: ${a.error ?? "no reason given"}`,
          });
        let b: Buffer;
        try {
          b = readFileSync(out);
        } catch (e) {
          throw new PolicyError({
            source: out,
            message: `${src} said ok for layer ${i.layer} but ${out} cannot be read: ${(e as Error).message}`,
          });
        }
        if (b.byteLength !== R * E * 4)
          throw new PolicyError({
            source: out,
            message: `${out}: ${b.byteLength} bytes from ${src}, expected ${R}×${E} f32 = ${R * E * 4}`,
          });
        const w = new Float32Array(R * E);
        new Uint8Array(w.buffer).set(b);
        return w;
      } finally {
        for (const n of ["indices", "weights", "probabilities", "logits", "out"])
          rmSync(`${base}.${n}.bin`, { force: true });
      }
    },
    async close() {
      const p = proc;
      if (!p) return;
      if (p.exitCode === null && p.signalCode === null) {
        const exited = new Promise<void>((res) => p.once("exit", () => res()));
        p.stdin!.end();
        const t = setTimeout(() => p.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
