import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { startTcpGate, type TcpGate } from './tcp-gate.js';

/**
 * Test hosts of our own: one network namespace per host, joined by a bridge to this machine, so each
 * grantkeeper process has its own network stack and reaches the shared services only across the
 * bridge. Inside a host, 127.0.0.1:PORT reaches the service on PORT of this machine (a relay in the
 * host to a relay on the bridge address to the service), so URLs read the same everywhere; a route
 * can be given its own bridge-side gate, which the test cuts to partition that host from it alone.
 */
export interface NetHost {
  name: string;
  /** The host's address on the bridge: where its API is reached from this machine. */
  address: string;
  /** Prefix that runs a command inside the host (it execs, so the pid is the command's). */
  wrap: string[];
}

export interface NetHosts {
  hosts: NetHost[];
  /** The bridge-side gate a host's route to `port` goes through, when it was given one. */
  gate(host: number, port: number): TcpGate | undefined;
  close(): Promise<void>;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

/** Why network namespaces cannot be made here, or undefined when they can. */
export function netHostsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const probe = `gkprobe${process.pid % 100_000}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return undefined;
  } catch (err) {
    return `ip netns add failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
}

/** Forwards 127.0.0.1:listen → target:port for every pair, inside the namespace it is run in. */
const RELAY = `
const net = require('node:net');
const [target, ...pairs] = process.argv.slice(1);
for (const pair of pairs) {
  const [listen, port] = pair.split(':').map(Number);
  net.createServer((down) => {
    const up = net.connect(port, target);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.pipe(up); up.pipe(down);
  }).listen(listen, '127.0.0.1', () => process.send?.('listening'));
}
`;

/**
 * `count` hosts reaching `ports` of this machine. `ownGate` names the routes that get a gate of
 * their own per host (to partition one host from one service).
 */
export async function createNetHosts(
  count: number,
  ports: number[],
  ownGate: number[] = [],
): Promise<NetHosts> {
  const tag = (process.pid % 10_000).toString();
  const subnet = 200 + (process.pid % 50);
  const bridge = `gkbr${tag}`;
  const gatewayAddress = `10.231.${subnet}.1`;
  const cleanups: Array<() => unknown> = [];
  const close = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch {
        // best effort: the next step still runs
      }
    }
  };
  const gates = new Map<string, TcpGate>();
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    cleanups.push(() => ip('link', 'del', bridge));
    ip('addr', 'add', `${gatewayAddress}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    // The bridge side of every shared route.
    for (const port of ports) {
      const gate = await startTcpGate(port, { listenHost: gatewayAddress, listenPort: port });
      cleanups.push(() => gate.close());
    }
    const hosts: NetHost[] = [];
    for (let i = 0; i < count; i++) {
      const name = `gk${tag}h${i}`;
      const address = `10.231.${subnet}.${10 + i}`;
      ip('netns', 'add', name);
      cleanups.push(() => ip('netns', 'del', name));
      const outside = `gk${tag}v${i}`;
      const inside = `gk${tag}p${i}`;
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside);
      ip('link', 'set', inside, 'netns', name);
      ip('link', 'set', outside, 'master', bridge);
      ip('link', 'set', outside, 'up');
      const inNs = (...args: string[]) => ip('netns', 'exec', name, 'ip', ...args);
      inNs('addr', 'add', `${address}/24`, 'dev', inside);
      inNs('link', 'set', inside, 'up');
      inNs('link', 'set', 'lo', 'up');
      const pairs: string[] = [];
      for (const port of ports) {
        if (ownGate.includes(port)) {
          const gate = await startTcpGate(port, { listenHost: gatewayAddress });
          cleanups.push(() => gate.close());
          gates.set(`${i}:${port}`, gate);
          pairs.push(`${port}:${gate.port}`);
        } else {
          pairs.push(`${port}:${port}`);
        }
      }
      const relay: ChildProcess = spawn(
        'ip',
        ['netns', 'exec', name, process.execPath, '-e', RELAY, gatewayAddress, ...pairs],
        { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
      );
      cleanups.push(() => relay.kill('SIGKILL'));
      await new Promise<void>((resolve, reject) => {
        let listening = 0;
        relay.on('message', () => {
          if (++listening === pairs.length) resolve();
        });
        relay.once('exit', (code) => reject(new Error(`the relay in ${name} exited (${code})`)));
      });
      hosts.push({ name, address, wrap: ['ip', 'netns', 'exec', name] });
    }
    return { hosts, gate: (host, port) => gates.get(`${host}:${port}`), close };
  } catch (err) {
    await close();
    throw err;
  }
}
