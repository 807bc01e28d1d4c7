import { rmSync } from 'node:fs';

export const MIB = 2 ** 20;

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
