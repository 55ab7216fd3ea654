// Simulated hosts for the cluster tests: one network namespace per host, each with a veth whose
// other end sits on a bridge inside a private "switch" namespace. Addresses (10.77.0.x) exist
// only inside these namespaces; the root namespace's network is never touched. Names carry the
// creating pid so a later run removes what a crashed run left behind.
import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

const PREFIX = "mqcl";

function ip(args: readonly string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Throws a clear error when this machine cannot create network namespaces (not root, no iproute2). */
export function assertNetnsWorks(): void {
  const probe = `${PREFIX}-${process.pid}-probe`;
  try {
    ip(["netns", "add", probe]);
    ip(["-n", probe, "link", "set", "lo", "up"]);
  } catch (e) {
    const err = e as { stderr?: Buffer | string; message: string };
    throw new Error(
      `the cluster tests simulate hosts with network namespaces and need root with iproute2 ('ip netns add' failed: ${String(err.stderr ?? err.message).trim()})`,
    );
  } finally {
    try {
      ip(["netns", "del", probe]);
    } catch {}
  }
}

/** Removes namespaces of ours whose creating process is gone (a run killed before its teardown). */
export function sweepStaleNamespaces(): number {
  let n = 0;
  for (const line of ip(["netns", "list"]).split("\n")) {
    const name = line.split(" ")[0];
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name ?? "");
    if (!m || alive(Number(m[1]))) continue;
    try {
      ip(["netns", "del", name]);
      n++;
    } catch {}
  }
  return n;
}

export interface Host {
  readonly name: string;
  readonly ns: string;
  readonly addr: string;
}

// Plain fields (no parameter properties): the benchmark runs this file with Node's type stripping.
export class TestNet {
  private readonly children = new Set<ChildProcess>();
  readonly tag: string;
  readonly switchNs: string;
  readonly hosts: ReadonlyMap<string, Host>;

  private constructor(tag: string, switchNs: string, hosts: ReadonlyMap<string, Host>) {
    this.tag = tag;
    this.switchNs = switchNs;
    this.hosts = hosts;
  }

  /** Creates the switch and one namespace per host name (addresses 10.77.0.11, .12, ...). */
  static create(names: readonly string[]): TestNet {
    const tag = randomBytes(3).toString("hex").slice(0, 5);
    const nsOf = (h: string) => `${PREFIX}-${process.pid}-${tag}-${h}`;
    const sw = nsOf("sw");
    const hosts = new Map<string, Host>();
    const net = new TestNet(tag, sw, hosts);
    try {
      ip(["netns", "add", sw]);
      ip(["-n", sw, "link", "add", "br0", "type", "bridge"]);
      ip(["-n", sw, "link", "set", "br0", "up"]);
      names.forEach((h, i) => {
        const ns = nsOf(h);
        const addr = `10.77.0.${11 + i}`;
        ip(["netns", "add", ns]);
        hosts.set(h, { name: h, ns, addr });
        // veth names are limited to 15 characters: mq + tag + index + side.
        const a = `mq${tag}${i.toString(36)}h`;
        const b = `mq${tag}${i.toString(36)}s`;
        ip(["link", "add", a, "netns", ns, "type", "veth", "peer", "name", b, "netns", sw]);
        ip(["-n", sw, "link", "set", b, "master", "br0"]);
        ip(["-n", sw, "link", "set", b, "up"]);
        ip(["-n", ns, "addr", "add", `${addr}/24`, "dev", a]);
        ip(["-n", ns, "link", "set", a, "up"]);
        ip(["-n", ns, "link", "set", "lo", "up"]);
      });
    } catch (e) {
      net.destroy();
      throw e;
    }
    return net;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no simulated host ${name}`);
    return h;
  }

  /** Spawns `cmd` inside the host's namespace (`ip netns exec` execs it: the pid is the command's). */
  spawn(host: string, cmd: string, args: readonly string[], o: SpawnOptions = {}): ChildProcess {
    const c = spawn("ip", ["netns", "exec", this.host(host).ns, cmd, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...o,
    });
    this.children.add(c);
    c.once("exit", () => this.children.delete(c));
    return c;
  }

  /** Kills what this net started, then deletes its namespaces (which removes the veths and bridge). */
  destroy(): void {
    for (const c of this.children) {
      try {
        c.kill("SIGKILL");
      } catch {}
    }
    for (const h of this.hosts.values()) {
      try {
        ip(["netns", "del", h.ns]);
      } catch {}
    }
    try {
      ip(["netns", "del", this.switchNs]);
    } catch {}
  }
}
