"""Merges the study.json files of one model's `moeq study` runs split by calibration size or by
policy (run in parallel on the GPU machine: policy-study-gpu.sh) into one study.json and the
tables `moeq study` prints (libs/study/src/table.ts), with the default's margin to the best fixed
policy per size. Usage: python3 merge-studies.py OUT_DIR study1.json study2.json …"""
import json, os, sys

out, files = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f)) for f in files]
cells, seen = [], set()
for r in runs:
    for c in r["cells"]:
        k = (c["policy"], c["calib"])
        if k not in seen:
            seen.add(k); cells.append(c)
res = dict(runs[0]); res["cells"] = cells; res["seconds"] = max(r["seconds"] for r in runs)
os.makedirs(out, exist_ok=True)
json.dump(res, open(os.path.join(out, "study.json"), "w"), indent=1)
policies = list(dict.fromkeys(c["policy"] for c in cells))
sizes = list(dict.fromkeys(c["calib"] for c in cells if c["calib"] != "-"))
at = lambda p, z: next((c for c in cells if c["policy"] == p and c["calib"] in (z, "-")), None)
s = res["settings"]
L = [f"{res['arch']} ({res['model']}) — {s['algorithm'].upper()} W{s['bits']} g{s['groupSize']} {'sym' if s['symmetric'] else 'asym'}, experts only, full-precision propagation; eval {s['eval']} ({res['evalTokens']} scored tokens), calib {s['calib']}", ""]
L.append("| policy | " + " | ".join(f"{z}: mean KLD | p99 | same-top" for z in sizes) + " |")
L.append("|---|" + "|".join("---|---|---" for _ in sizes) + "|")
best = {z: min(at(p, z)["kld"]["mean"] for p in policies if at(p, z)) for z in sizes}
for p in policies:
    cols = []
    for z in sizes:
        c = at(p, z); m = f"{c['kld']['mean']:.5f} ± {c['kld']['uncertainty']:.5f}"
        cols.append(f"{'**'+m+'**' if c['kld']['mean'] == best[z] else m} | {c['kld']['p99']:.4f} | {c['sameTop']*100:.2f}%")
    L.append(f"| {p} | " + " | ".join(cols) + " |")
L += ["", "Statistics (s, rows × routed's; experts routed / blended / fallback) and coverage", ""]
L.append("| policy | " + " | ".join(sizes) + " |"); L.append("|---|" + "|".join("---" for _ in sizes) + "|")
for p in policies:
    if p == "rtn":
        continue
    cols = []
    for z in sizes:
        c = at(p, z); r = at("routed", z); st = c["statistics"]; cv = c["coverage"]
        cols.append(f"{st['seconds']:.2f} s ({st['seconds']/r['statistics']['seconds']:.2f}×), {st['rows']/r['statistics']['rows']:.2f}× rows; {cv['routedOnly']}/{cv['blended']}/{cv['uncalibrated']}; {cv['uncalibrated']} → RTN, ESS min {cv['minEss']:.1f} med {cv['medianEss']:.0f}")
    L.append(f"| {p} | " + " | ".join(cols) + " |")
fixed = [p for p in policies if p in ("routed", "all", "soft", "soft2", "routed-w2") or p.startswith(("fill:", "mix:"))]
L += ["", "Margin to the best fixed policy (" + ", ".join(fixed) + ")", ""]
for p in policies:
    if p in fixed or p == "rtn":
        continue
    row = []
    for z in sizes:
        b = min(fixed, key=lambda q: at(q, z)["kld"]["mean"])
        row.append(f"{z}: {100*(at(p, z)['kld']['mean']/at(b, z)['kld']['mean']-1):+.2f} % vs {b}")
    L.append(f"- {p}: " + "; ".join(row))
open(os.path.join(out, "study.md"), "w").write("\n".join(L) + "\n")
print("\n".join(L))
