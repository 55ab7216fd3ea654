"""Times the GPTQ reference oracle (../shared/device/oracles/gptq_ref.py) on one weight, in its
own float64 and in a float32 variant, for libs/quant/bench/gptq.ts.

  python3 gptq_oracle_bench.py ORACLE_PY W.f32 H.f32 rows cols bits group sym actorder damp reps OUT_DIR

The float32 variant is the oracle's own source with every `.double()` turned into `.float()`
(checked below), loaded as a separate module: same algorithm, half-width arithmetic. Each
variant's time is the best of `reps` runs (at 1 thread and at every core) of gptq() + proxy_loss() (the loss is part of our
kernel's output too). OUT_DIR gets times.json and the float64 run's Q / scale / zero (raw f32)
so that the caller can count code agreement on this larger case.
"""
import importlib.util, json, os, sys, time
import torch

def load(path, name, f32):
    src = open(path).read()
    if f32:
        n = src.count(".double()")
        assert n >= 3, f"expected the oracle to cast with .double() (found {n}); update this wrapper"
        src = src.replace(".double()", ".float()")
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod

def main():
    oracle, wpath, hpath = sys.argv[1:4]
    rows, cols, bits, group = map(int, sys.argv[4:8])
    sym, act = sys.argv[8] == "1", sys.argv[9] == "1"
    damp, reps, out = float(sys.argv[10]), int(sys.argv[11]), sys.argv[12]
    W = torch.frombuffer(bytearray(open(wpath, "rb").read()), dtype=torch.float32).reshape(rows, cols)
    H = torch.frombuffer(bytearray(open(hpath, "rb").read()), dtype=torch.float32).reshape(cols, cols)
    # OpenMP may start with 1 thread in containers, and many small ops can run slower on more
    # threads: the oracle gets the better of 1 thread and every core (our kernel uses every core).
    times = {"torch": torch.__version__}
    thread_counts = sorted({1, os.cpu_count() or 1})
    for label, f32 in (("f64", False), ("f32", True)):
        mod = load(oracle, f"gptq_ref_{label}", f32)
        best, best_threads = float("inf"), 1
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for _ in range(reps):
                t0 = time.perf_counter()
                Q, S, Z, gi, perm = mod.gptq(W, H, bits, group, sym, act, damp)
                loss = mod.proxy_loss(W, Q, H)
                elapsed = time.perf_counter() - t0
                if elapsed < best:
                    best, best_threads = elapsed, threads
        times[label] = best
        times[f"{label}_threads"] = best_threads
        times[f"{label}_loss"] = loss
        if not f32:
            for k, t in (("Q", Q), ("scale", S), ("zero", Z)):
                open(os.path.join(out, f"{k}.f32"), "wb").write(t.contiguous().numpy().astype("float32").tobytes())
    json.dump(times, open(os.path.join(out, "times.json"), "w"))

main()
