import { realpathSync, statSync } from "node:fs";
import { sep } from "node:path";
import { DescriptorRejected } from "./errors.ts";

/** Resolved allowed roots; a path is inside when its realpath is a root or below one. */
export class AllowedRoots {
  private readonly roots: string[];

  constructor(roots: ReadonlyArray<string>) {
    this.roots = roots.map((r) => realpathSync(r));
  }

  get list(): ReadonlyArray<string> {
    return this.roots;
  }

  /** realpath of `path` (symlinks and `..` resolved) if it is a regular file under a root. */
  resolveFile(path: string, source: string): { real: string; size: number } {
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      throw new DescriptorRejected({ reason: "missing", source, message: `${source}: file ${path} does not exist` });
    }
    if (!this.roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep)))
      throw new DescriptorRejected({
        reason: "outside-roots",
        source,
        message: `${source}: ${path} (${real}) is outside the run's allowed roots (${this.roots.join(", ")})`,
      });
    const st = statSync(real);
    if (!st.isFile())
      throw new DescriptorRejected({ reason: "missing", source, message: `${source}: ${path} is not a regular file` });
    return { real, size: st.size };
  }
}
