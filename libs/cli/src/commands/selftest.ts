// `moeq selftest`: proves the toolchain works end to end on this machine (Node, the native
// addon, OpenBLAS) by running one GEMM through the addon and checking it against plain JS.

import { native } from "@moeq/native";
import { Console, Effect } from "effect";
import { Command } from "effect/cli";

export const selftest = Command.make("selftest", {}, () =>
  Effect.gen(function* () {
    const [m, n, k] = [33, 17, 65];
    const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
    const c = new Float32Array(m * n);
    yield* Effect.promise(() => native.gemmF32(a, b, c, m, n, k));
    let err = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc += a[i * k + p] * b[p * n + j];
        err = Math.max(err, Math.abs(acc - c[i * n + j]));
      }
    if (err > 1e-3) return yield* Effect.fail(new Error(`native GEMM disagrees with JS (max abs error ${err})`));
    yield* Console.log(
      `node ${process.version}, native addon ok (cuda: ${native.withCuda}), BLAS threads ${native.blasThreads()}, GEMM max abs error ${err.toExponential(2)}`,
    );
  }),
).pipe(Command.withDescription("Check the toolchain: Node, the native addon and BLAS"));
