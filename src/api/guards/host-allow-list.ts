import { type AllowedHost, HOST_PORT_PATTERN } from '../../config/config-schema.js';

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];
const WILDCARD_BINDS = new Set(['', '0.0.0.0', '::', '[::]', '::0', '0:0:0:0:0:0:0:0']);

/**
 * The Host headers the API answers, against DNS rebinding: a page on evil.example whose name is
 * re-pointed at 127.0.0.1 reaches our port, but its requests still say `Host: evil.example`.
 * Allowed: the loopback names on the listening port, the bind address unless it is a wildcard, and
 * the operator's extra hosts.
 */
export class HostAllowList {
  /** Exact `host:port` values (and the bare host when the port is HTTP's default). */
  private readonly exact = new Set<string>();
  /** Names admitted on any port. */
  private readonly anyPort = new Set<string>();

  constructor(bindHost: string, listeningPort: number, extra: readonly AllowedHost[]) {
    const bind = bindHost.toLowerCase();
    const names = WILDCARD_BINDS.has(bind) ? LOOPBACK_NAMES : [...LOOPBACK_NAMES, bracketed(bind)];
    for (const host of names) this.add({ host, port: listeningPort });
    for (const rule of extra) this.add(rule);
  }

  allows(hostHeader: string | undefined): boolean {
    if (!hostHeader) return false;
    const value = hostHeader.toLowerCase();
    if (this.exact.has(value)) return true;
    const host = HOST_PORT_PATTERN.exec(value)?.[1];
    return host !== undefined && this.anyPort.has(host);
  }

  private add(rule: AllowedHost): void {
    if (rule.port === null) {
      this.anyPort.add(rule.host);
      return;
    }
    this.exact.add(`${rule.host}:${rule.port}`);
    if (rule.port === 80) this.exact.add(rule.host);
  }
}

/** An IPv6 bind address appears in Host headers in brackets. */
function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
