import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';

/**
 * The grants page's one library, uPlot, served from node_modules as installed (no build step, no
 * CDN: the page's CSP allows only our own origin and nonce). The version is in the path, so a copy
 * is cached for a year and an upgrade changes the URL.
 */
const uplotDir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
const uplotVersion = (
  JSON.parse(readFileSync(join(uplotDir, '..', 'package.json'), 'utf8')) as { version: string }
).version;

export const ASSETS = {
  uplotScript: `assets/uplot-${uplotVersion}.min.js`,
  uplotStyle: `assets/uplot-${uplotVersion}.min.css`,
};

const FILES: Record<string, { file: string; type: string }> = {
  [ASSETS.uplotScript]: { file: 'uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  [ASSETS.uplotStyle]: { file: 'uPlot.min.css', type: 'text/css; charset=utf-8' },
};

export function registerAssetRoutes(server: FastifyInstance): void {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    // Read once, at start: a missing file fails the start, not the first page view.
    const body = readFileSync(join(uplotDir, file));
    server.get(`/${path}`, { schema: { hide: true } }, async (_req, reply) =>
      reply.type(type).header('cache-control', 'public, max-age=31536000, immutable').send(body),
    );
  }
}
