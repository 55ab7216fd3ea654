// A child started with spawnTied dies with its parent even when the parent is SIGKILLed (no exit
// handler runs): the kernel's parent-death signal, set by setpriv before exec.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { processRunning, tiedChildrenSupported } from "../src/index.ts";

const lifetime = join(import.meta.dirname, "..", "dist", "child-lifetime.js");

describe("spawnTied", () => {
  it("is available on this Linux machine (util-linux setpriv)", () => {
    expect(tiedChildrenSupported()).toBe(true);
  });

  it("a tied child dies with its SIGKILLed parent, and runs as the command itself (same pid, its own argv)", async () => {
    // the parent: starts a tied `sleep`, prints its pid, then waits to be killed
    const parent = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { spawnTied } from ${JSON.stringify(lifetime)};
         const c = spawnTied("sleep", ["600"], { stdio: "ignore" });
         console.log(c.pid); setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const childPid = await new Promise<number>((resolve) =>
      parent.stdout!.once("data", (b: Buffer) => resolve(Number(String(b).trim()))),
    );
    // setpriv has exec'd into sleep: same pid, the command's own argv
    await new Promise((r) => setTimeout(r, 200));
    expect(readFileSync(`/proc/${childPid}/cmdline`, "utf8").split("\0").slice(-2)).toEqual(["600", ""]);
    expect(processRunning(childPid)).toBe(true);
    parent.kill("SIGKILL");
    const deadline = Date.now() + 3000;
    while (processRunning(childPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(processRunning(childPid)).toBe(false);
  }, 20_000);
});
