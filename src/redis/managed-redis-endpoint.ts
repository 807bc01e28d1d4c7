import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The managed redis-server listens on a port picked at start; it is written here so that CLI
 * commands run beside the service (grantkeeper token, refresh, status) can reach the same queue.
 */
export function managedRedisEndpointFile(dataDir: string): string {
  return join(dataDir, 'redis', 'endpoint');
}

export function writeManagedRedisEndpoint(dataDir: string, url: string): void {
  writeFileSync(managedRedisEndpointFile(dataDir), `${url}\n`, { mode: 0o600 });
}

export function clearManagedRedisEndpoint(dataDir: string): void {
  rmSync(managedRedisEndpointFile(dataDir), { force: true });
}

/** REDIS_URL when set, else the running service's managed Redis, else undefined (not running). */
export function redisUrlForTools(configuredUrl: string | undefined, dataDir: string): string | undefined {
  if (configuredUrl) return configuredUrl;
  try {
    const url = readFileSync(managedRedisEndpointFile(dataDir), 'utf8').trim();
    return url.startsWith('redis://') ? url : undefined;
  } catch {
    return undefined;
  }
}
