import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

describe("project scripts", () => {
  it("run on Node 24 whatever the machine's Node is", () => {
    const out = execFileSync("bash", ["-c", "source infra/env.sh && node --version"], { cwd: root, encoding: "utf8" });
    expect(out.trim()).toMatch(/^v24\./);
  });

  it("moeq --version and selftest work through the launcher", () => {
    const version = execFileSync(join(root, "moeq"), ["--version"], { encoding: "utf8" });
    expect(version).toMatch(/moeq v\d+\.\d+\.\d+/);
    const st = execFileSync(join(root, "moeq"), ["selftest"], { encoding: "utf8" });
    expect(st).toMatch(/native addon ok/);
  });

  it("toolchain provisioning is idempotent (second run installs nothing)", () => {
    const out = execFileSync("bash", ["infra/toolchain.sh"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    expect(out).toBe("");
  });
});
