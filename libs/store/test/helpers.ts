import { mkdtempSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export { spawnNode } from "../../bus/test/child.ts";
export { freshRunId, natsArg, startTestNats, type TestNats } from "../../bus/test/nats-fixture.ts";

export const tempRoot = (tag: string) => realpathSync(mkdtempSync(join(tmpdir(), `moeq-store-${tag}-`)));

export const until = async (cond: () => boolean | Promise<boolean>, timeoutMs = 15_000) => {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 25));
  }
};
