// Live progress from the run's events: a redrawn per-layer table on a terminal, plain lines
// otherwise (logs, CI, tests).
import type { Event } from "@moeq/contracts";

interface LayerRow {
  loaded: boolean;
  routed: boolean;
  zeroTokenExperts: number;
  calibrated: Set<string>;
  quantized: Set<string>;
  completed: boolean;
  seconds: number;
}

export class Progress {
  private layers: LayerRow[] = [];
  private expectedPerLayer = 0;
  private lines = 0;
  private status = "starting";
  private readonly started = Date.now();

  constructor(
    private readonly write: (s: string) => void,
    private readonly tty: boolean,
    private readonly targetsPerLayer: (layer: number) => number,
  ) {}

  private row(L: number): LayerRow {
    while (this.layers.length <= L)
      this.layers.push({
        loaded: false,
        routed: false,
        zeroTokenExperts: 0,
        calibrated: new Set(),
        quantized: new Set(),
        completed: false,
        seconds: 0,
      });
    return this.layers[L];
  }

  private line(s: string) {
    if (!this.tty) this.write(`${s}\n`);
    else this.status = s;
  }

  note(s: string) {
    if (this.tty) {
      this.clear();
      this.write(`${s}\n`);
      this.render();
    } else this.write(`${s}\n`);
  }

  on(e: Event): void {
    const p = e.payload as Record<string, unknown>;
    switch (e.type) {
      case "StageStarted":
        this.line(`stage ${p.stage}.${p.instance} started (pid ${p.pid})`);
        break;
      case "StageFailed":
        this.note(`stage ${p.stage}.${p.instance} failed: ${(p.error as { message: string }).message}`);
        break;
      case "ModelOpened":
        this.expectedPerLayer = this.targetsPerLayer(0);
        for (let L = 0; L < (p.layers as number); L++) this.row(L);
        this.line(
          `model ${p.arch}: ${p.layers} layers, ${(p.expertsPerLayer as number[])[0] ?? 0} experts per layer, top-${p.topK}`,
        );
        break;
      case "LayerLoaded":
        this.row(p.layer as number).loaded = true;
        if (!this.tty) this.line(`layer ${p.layer}: loaded`);
        break;
      case "RoutingPlanned": {
        const r = this.row(p.layer as number);
        r.routed = true;
        r.zeroTokenExperts = (p.coverage as { tokensUsed: number }[]).filter((c) => c.tokensUsed === 0).length;
        this.line(
          `layer ${p.layer}: routed ${p.tokens} tokens (${p.policy})${r.zeroTokenExperts ? `, ${r.zeroTokenExperts} experts without tokens → RTN` : ""}`,
        );
        break;
      }
      case "ExpertCalibrated":
        this.row(p.layer as number).calibrated.add(`${p.expert}/${p.proj}`);
        break;
      case "ExpertQuantized": {
        const L = p.layer as number;
        const r = this.row(L);
        r.quantized.add(`${p.expert}/${p.proj}`);
        if (!this.tty && r.quantized.size === this.targetsPerLayer(L))
          this.line(`layer ${L}: quantized ${r.quantized.size} projections`);
        break;
      }
      case "LayerCompleted": {
        const r = this.row(p.layer as number);
        r.completed = true;
        r.seconds = p.seconds as number;
        this.line(`layer ${p.layer}: calibration done in ${(p.seconds as number).toFixed(2)} s`);
        break;
      }
      case "ShardWritten":
        this.line(
          `wrote ${p.file} (${((p.bytes as number) / 1e6).toFixed(1)} MB, sha256 ${(p.sha256 as string).slice(0, 12)}…)`,
        );
        break;
      case "CheckpointPacked":
        this.line(`packed ${p.dir} (${p.format}, ${p.shards} shard(s)); evaluating`);
        break;
      case "EvaluationCompleted":
        this.line(
          `evaluation done: mean KLD ${((p.stats as { kld: { kld: { mean: number } } }).kld.kld.mean).toFixed(5)}`,
        );
        break;
      case "RunFailed":
        this.note(`run failed in ${p.stage}: ${(p.error as { message: string }).message}`);
        break;
      default:
        break;
    }
    if (this.tty) this.render();
  }

  private clear() {
    if (this.lines > 0) this.write(`\x1b[${this.lines}A\x1b[J`);
    this.lines = 0;
  }

  render(): void {
    if (!this.tty) return;
    this.clear();
    const out: string[] = [];
    const bar = (n: number, d: number, w = 20) => {
      const f = d > 0 ? Math.round((w * n) / d) : 0;
      return `${"█".repeat(f)}${"░".repeat(w - f)} ${String(n).padStart(4)}/${d}`;
    };
    this.layers.forEach((r, L) => {
      const d = this.targetsPerLayer(L) || this.expectedPerLayer;
      const state = r.completed
        ? `done ${r.seconds.toFixed(1)} s`
        : r.routed
          ? "calibrating"
          : r.loaded
            ? "loaded"
            : "waiting";
      out.push(
        `  layer ${String(L).padStart(3)}  calib ${bar(r.calibrated.size, d)}  quant ${bar(r.quantized.size, d)}  ${state}${r.zeroTokenExperts ? `  (${r.zeroTokenExperts} RTN fallback)` : ""}`,
      );
    });
    out.push(`  ${((Date.now() - this.started) / 1000).toFixed(1)} s  ${this.status}`);
    this.write(`${out.join("\n")}\n`);
    this.lines = out.length;
  }
}
