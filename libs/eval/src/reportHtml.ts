// report.html: one self-contained page (inline CSS, SVG and a few lines of JS, no network).
// Heatmaps are drawn here as SVG so the page renders even with scripts off; the script only
// adds a hover read-out.
import type { KldHistogram, KldStats } from "./kld.ts";
import { formatKldTable } from "./kldTable.ts";
import type { ExpertMatrix, ReportData } from "./reportData.ts";

function calibrationHtml(c: NonNullable<NonNullable<ReportData["coverage"]>["calibration"]>): string {
  const list = (xs: readonly string[]) => (xs.length ? `: ${escapeHtml(xs.join(" "))}` : "");
  return `<p>Calibration per expert under the policy: ${c.routed} on exactly their routed tokens; ${c.blended.length} blended with tokens the router did not send them${list(c.blended)}; ${c.fallback.length} without calibration tokens (fallback)${list(c.fallback)}.</p>`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Viridis, sampled at 9 stops: perceptually even and readable for colour-blind readers.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
const NULL_COLOR = "#d9d9d9";
const ZERO_COLOR = "#e8453c";

function hexToRgb(h: string): [number, number, number] {
  return [1, 3, 5].map((i) => Number.parseInt(h.slice(i, i + 2), 16)) as [number, number, number];
}

export function viridis(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const a = hexToRgb(VIRIDIS[i]);
  const b = hexToRgb(VIRIDIS[i + 1]);
  const f = x - i;
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}

export function formatNumber(v: number | null): string {
  if (v === null || Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e7) return String(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  return v.toPrecision(4);
}

interface HeatmapSpec {
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly matrix: ExpertMatrix;
  /** Log colour scale for quantities spanning decades (token counts, weight mass). */
  readonly log: boolean;
  /** Draw exact zeros in a warning colour (experts that got no calibration data). */
  readonly flagZero: boolean;
  /** Why a map may have no value at all (said under its title when it has none). */
  readonly absentReason?: string;
}

function heatmap(spec: HeatmapSpec, layers: number, experts: number): string {
  // Two heatmaps side by side on a laptop screen for up to ~32 experts; wider ones scroll.
  const cw = Math.max(4, Math.min(20, Math.floor(544 / experts)));
  const ch = Math.max(4, Math.min(22, Math.floor(320 / layers)));
  const left = 44;
  const top = 22;
  const width = left + experts * cw + 4;
  const height = top + layers * ch + 4;
  const values = spec.matrix
    .flat()
    .filter((v): v is number => v !== null && Number.isFinite(v) && (!spec.log || v > 0));
  const lo = values.length ? Math.min(...values) : 0;
  const hi = values.length ? Math.max(...values) : 1;
  const scale = (v: number) => {
    if (spec.log) return hi > lo ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : 1;
    return hi > lo ? (v - lo) / (hi - lo) : 1;
  };
  const cells: string[] = [];
  for (let l = 0; l < layers; l++)
    for (let e = 0; e < experts; e++) {
      const v = spec.matrix[l][e];
      let fill: string;
      if (v === null || Number.isNaN(v)) fill = NULL_COLOR;
      else if (spec.flagZero && v === 0) fill = ZERO_COLOR;
      else if (spec.log && v <= 0) fill = VIRIDIS[0];
      else fill = viridis(scale(v));
      const label = `layer ${l}, expert ${e}: ${formatNumber(v)}${spec.unit ? ` ${spec.unit}` : ""}`;
      cells.push(
        `<rect class="cell" x="${left + e * cw}" y="${top + l * ch}" width="${cw - 1}" height="${ch - 1}" fill="${fill}" data-label="${escapeHtml(label)}"><title>${escapeHtml(label)}</title></rect>`,
      );
    }
  const layerStep = Math.ceil(layers / Math.max(1, Math.floor((layers * ch) / 14)));
  const expertStep = Math.ceil(experts / Math.max(1, Math.floor((experts * cw) / 26)));
  const axes: string[] = [];
  for (let l = 0; l < layers; l += layerStep)
    axes.push(`<text x="${left - 6}" y="${top + l * ch + ch / 2 + 4}" text-anchor="end">${l}</text>`);
  for (let e = 0; e < experts; e += expertStep)
    axes.push(`<text x="${left + e * cw + cw / 2}" y="${top - 6}" text-anchor="middle">${e}</text>`);
  const legendStops = VIRIDIS.map(
    (c, i) => `<stop offset="${(100 * i) / (VIRIDIS.length - 1)}%" stop-color="${c}"/>`,
  ).join("");
  const legend = [
    `<span>${formatNumber(lo)}</span>`,
    `<svg width="160" height="12"><defs><linearGradient id="g-${spec.id}">${legendStops}</linearGradient></defs><rect width="160" height="12" fill="url(#g-${spec.id})"/></svg>`,
    `<span>${formatNumber(hi)}</span>`,
    `<span class="muted">${spec.unit ? `${escapeHtml(spec.unit)}, ` : ""}${spec.log ? "log scale" : "linear scale"}${spec.flagZero ? ', <i class="swatch zero"></i> zero' : ""}, <i class="swatch none"></i> not measured</span>`,
  ].join("");
  return `<section class="panel heat">
<h3>${escapeHtml(spec.title)} <span class="muted">rows: layers, columns: experts</span></h3>
${values.length === 0 ? `<p class="muted empty">Not measured in this run${spec.absentReason ? `: ${escapeHtml(spec.absentReason)}` : ""}.</p>` : ""}
<svg class="heatmap" id="${spec.id}" data-layers="${layers}" data-experts="${experts}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(spec.title)}: layers by experts">
${axes.join("\n")}
${cells.join("\n")}
</svg>
<div class="legend">${legend}</div>
</section>`;
}

function histogram(h: KldHistogram): string {
  const bars = [h.below, ...h.counts];
  const labels = [
    `< 1e${h.log10Edges[0]}`,
    ...h.counts.map((_, i) => `[1e${h.log10Edges[i].toFixed(2)}, 1e${h.log10Edges[i + 1].toFixed(2)})`),
  ];
  const max = Math.max(1, ...bars);
  const bw = Math.max(6, Math.min(24, Math.floor(720 / bars.length)));
  const left = 48;
  const plotH = 180;
  const width = left + bars.length * bw + 10;
  const height = plotH + 40;
  const rects = bars
    .map((c, i) => {
      const hgt = (c / max) * plotH;
      return `<rect class="bar" x="${left + i * bw}" y="${10 + plotH - hgt}" width="${bw - 1}" height="${hgt}" fill="${i === 0 ? "#9e9e9e" : "#3b528b"}"><title>${escapeHtml(labels[i])}: ${c} tokens</title></rect>`;
    })
    .join("\n");
  const ticks: string[] = [
    `<text x="${left + bw / 2}" y="${plotH + 26}" text-anchor="middle">&lt;1e${h.log10Edges[0]}</text>`,
  ];
  h.log10Edges.forEach((edge, i) => {
    if (Number.isInteger(edge) && i > 0)
      ticks.push(`<text x="${left + (i + 1) * bw}" y="${plotH + 26}" text-anchor="middle">1e${edge}</text>`);
  });
  return `<svg class="histogram" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="distribution of per-token KL divergence">
<line x1="${left}" y1="${10 + plotH}" x2="${width - 6}" y2="${10 + plotH}" stroke="#888"/>
<text x="${left - 6}" y="16" text-anchor="end">${max}</text><text x="${left - 6}" y="${10 + plotH}" text-anchor="end">0</text>
${rects}
${ticks.join("\n")}
</svg>`;
}

function row(cells: string[], header = false): string {
  const tag = header ? "th" : "td";
  return `<tr>${cells.map((c) => `<${tag}>${c}</${tag}>`).join("")}</tr>`;
}

function pm(v: { value: number; uncertainty: number }, digits = 4): string {
  return `${v.value.toFixed(digits)} ± ${v.uncertainty.toFixed(digits)}`;
}

function summaryCards(kld: KldStats | null): string {
  if (!kld) return `<p class="muted">No evaluation in this run.</p>`;
  const cards: [string, string][] = [
    ["mean KLD", pm({ value: kld.kld.mean, uncertainty: kld.kld.uncertainty }, 5)],
    ["99 % KLD", kld.kld.p99.toFixed(4)],
    ["same top", `${(100 * kld.sameTop.value).toFixed(2)} ± ${(100 * kld.sameTop.uncertainty).toFixed(2)} %`],
  ];
  if (kld.perplexity) {
    cards.push(["PPL(Q)/PPL(base)", pm(kld.perplexity.pplRatio)]);
    cards.push([
      "PPL(Q) · PPL(base)",
      `${kld.perplexity.ppl.value.toFixed(2)} · ${kld.perplexity.pplBase.value.toFixed(2)}`,
    ]);
  }
  if (kld.deltaP) cards.push(["RMS Δp", `${(100 * kld.deltaP.rms).toFixed(3)} %`]);
  cards.push(["tokens scored", String(kld.tokens)]);
  return `<div class="cards">${cards.map(([k, v]) => `<div class="card"><div class="k">${escapeHtml(k)}</div><div class="v">${escapeHtml(v)}</div></div>`).join("")}</div>`;
}

const CSS = `
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
body{margin:0 auto;max-width:1400px;padding:16px 24px}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:6px 0}
.muted{color:#666;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:140px}
.card .k{font-size:12px;color:#666}.card .v{font-size:17px;font-weight:600;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;overflow-x:auto}
svg text{font-size:10px;fill:#444}svg .axis-title{font-size:9px;fill:#888}
rect.cell:hover{stroke:#000;stroke-width:1.5}
.legend{display:flex;align-items:center;gap:6px;font-size:12px;margin-top:4px}
.swatch{display:inline-block;width:10px;height:10px;vertical-align:middle;border:1px solid #aaa}
.swatch.zero{background:${ZERO_COLOR}}.swatch.none{background:${NULL_COLOR}}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f0f0f0}
pre{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;font-size:12px;overflow-x:auto}
#readout{position:fixed;right:16px;bottom:16px;background:#222;color:#fff;padding:6px 10px;border-radius:4px;font-size:13px;display:none}
`;

// Hover read-out for heatmap cells; keeps working without it thanks to the <title> tooltips.
const SCRIPT = `
(function () {
  var out = document.getElementById("readout");
  document.querySelectorAll("svg.heatmap").forEach(function (svg) {
    svg.addEventListener("mouseover", function (ev) {
      var t = ev.target;
      if (t && t.classList && t.classList.contains("cell")) { out.textContent = t.getAttribute("data-label"); out.style.display = "block"; }
    });
    svg.addEventListener("mouseleave", function () { out.style.display = "none"; });
  });
  var data = JSON.parse(document.getElementById("report-data").textContent);
  document.getElementById("cells-note").textContent =
    data.model.layers + " layers × " + data.model.experts + " experts per heatmap";
})();
`;

/** JSON without NaN/±∞ (not representable in JSON): they become null. */
export function reportJson(data: ReportData): string {
  return JSON.stringify(data, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2);
}

export function renderReportHtml(data: ReportData): string {
  const { layers, experts } = data.model;
  const maps: HeatmapSpec[] = [
    {
      id: "heat-routed",
      title: "Routed calibration tokens",
      absentReason: "no calibration pass (RTN, or moeq eval of a checkpoint)",
      unit: "tokens",
      matrix: data.experts.routedTokens,
      log: true,
      flagZero: true,
    },
    {
      id: "heat-mass",
      title: "Calibration weight mass",
      absentReason: "no calibration pass (RTN, or moeq eval of a checkpoint)",
      unit: "",
      matrix: data.experts.calibWeightMass,
      log: true,
      flagZero: true,
    },
    {
      id: "heat-werr",
      title: "Quantization error (weights, relative)",
      unit: "",
      matrix: data.experts.weightRelError,
      log: false,
      flagZero: false,
    },
    {
      id: "heat-oerr",
      title: "Output error on routed eval tokens (relative)",
      absentReason: "the first batch of windows was scored by an evaluator worker",
      unit: "",
      matrix: data.experts.outputRelError,
      log: false,
      flagZero: false,
    },
    {
      id: "heat-time",
      title: "Time per expert",
      unit: "s",
      matrix: data.experts.seconds,
      log: false,
      flagZero: false,
      absentReason: "no quantization in this run (moeq eval of a checkpoint)",
    },
  ];
  const settings = Object.entries(data.settings)
    .map(([k, v]) => row([escapeHtml(k), escapeHtml(v === null ? "—" : String(v))]))
    .join("");
  const layerRows = data.layers
    .map((s) => row([String(s.layer), formatNumber(s.outputRelError), String(s.tokens)]))
    .join("");
  const timings = data.timings.map((t) => row([escapeHtml(t.stage), formatNumber(t.seconds)])).join("");
  const cov = data.coverage;
  const coverage = cov
    ? `<p>${cov.expertsWithoutTokens} of ${cov.expertsTotal} experts got no routed calibration tokens; ${cov.expertsBelowMin} got fewer than ${cov.minTokens}.${cov.remedy ? ` Remedy: ${escapeHtml(cov.remedy)}.` : ""}</p>${cov.calibration ? calibrationHtml(cov.calibration) : ""}`
    : "";
  const embedded = reportJson(data).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(data.title)}</title><style>${CSS}</style></head>
<body>
<h1>${escapeHtml(data.title)}</h1>
<p class="muted">${escapeHtml(data.model.name)} · ${layers} layers × ${experts} experts${data.model.topK ? ` · top-${data.model.topK}` : ""} · ${escapeHtml(data.createdAt)}</p>
<h2>Quality</h2>
${summaryCards(data.kld)}
${data.kld ? `<div class="grid"><section class="panel"><h3>Per-token KL divergence</h3>${histogram(data.kld.kldHistogram)}</section><section class="panel"><h3>llama-perplexity style statistics</h3><pre>${escapeHtml(formatKldTable(data.kld))}</pre></section></div>` : ""}
<h2>Experts</h2>
<p class="muted" id="cells-note"></p>
${coverage}
<div class="grid">${maps.map((m) => heatmap(m, layers, experts)).join("\n")}</div>
<h2>Layers</h2>
<table><thead>${row(["layer", "MoE output rel. error", "tokens"], true)}</thead><tbody>${layerRows}</tbody></table>
<h2>Settings</h2>
<table><tbody>${settings}</tbody></table>
<h2>Timings</h2>
<table><thead>${row(["stage", "seconds"], true)}</thead><tbody>${timings}</tbody></table>
<div id="readout"></div>
<script type="application/json" id="report-data">${embedded}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}
