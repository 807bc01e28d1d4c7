import { type AddressInfo, connect, createServer, type Socket } from 'node:net';

export interface TcpGate {
  port: number;
  /**
   * Cuts the path, as a partition would: open connections are dropped, and new ones are accepted
   * but never answered (a black hole, so clients wait for their own timeouts) until `restore`.
   */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/**
 * A TCP relay to 127.0.0.1:`upstreamPort` that a test can cut off and restore, listening on
 * loopback (or `listenHost`, e.g. the host's end of a test network) on a free port or `listenPort`.
 */
export async function startTcpGate(
  upstreamPort: number,
  opts: { listenHost?: string; listenPort?: number } = {},
): Promise<TcpGate> {
  const open = new Set<Socket>();
  let cutOff = false;
  const server = createServer((downstream) => {
    open.add(downstream);
    downstream.on('close', () => open.delete(downstream));
    downstream.on('error', () => downstream.destroy());
    if (cutOff) return; // held silently: no bytes either way
    const upstream = connect(upstreamPort, '127.0.0.1');
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      downstream.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    downstream.on('close', () => upstream.destroy());
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, opts.listenHost ?? '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    cut() {
      cutOff = true;
      for (const socket of open) socket.destroy();
    },
    restore() {
      cutOff = false;
      // Connections held while cut never reached the server: drop them so clients reconnect.
      for (const socket of open) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
