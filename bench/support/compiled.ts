import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/util/package-root.js';

/** The children the scenarios fork, each a module in bench/support. */
export type BenchChildName = 'worker-child' | 'api-server-child' | 'constant-route-server';

/**
 * Compiles the measured children (and the src/, jobs/, db/ code they import) to plain JavaScript,
 * so they run as production does (`npm start` runs dist/) without tsx's loader thread in their RSS
 * and CPU. Into a fresh folder per run (the caller removes it), under node_modules so the output
 * resolves the package's dependencies.
 */
export function compileBenchChildren(): string {
  const root = packageRoot();
  const cache = join(root, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const outDir = mkdtempSync(join(cache, 'grantkeeper-bench-'));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(
      process.execPath,
      [tsc, '-p', join(root, 'bench', 'tsconfig.children.json'), '--outDir', outDir],
      {
        cwd: root,
        stdio: 'pipe',
      },
    );
  } catch (err) {
    const out = (err as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`compiling the bench children failed (run with --tsx to skip):\n${out}`);
  }
  return outDir;
}

/** The module to fork: compiled JavaScript when `compiledDir` is set, else the TypeScript source. */
export function benchChildUrl(name: BenchChildName, compiledDir: string | undefined): URL {
  return compiledDir
    ? pathToFileURL(join(compiledDir, 'bench', 'support', `${name}.js`))
    : new URL(`./${name}.ts`, import.meta.url);
}
