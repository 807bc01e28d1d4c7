import { existsSync, readFileSync } from 'node:fs';
import { Redis } from 'ioredis';

/** Every key and value in a Redis, as one string, to search for secrets that must not be there. */
export async function collectRedisText(url: string): Promise<string> {
  const redis = new Redis(url);
  const parts: string[] = [];
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'COUNT', 500);
      cursor = next;
      for (const key of keys) {
        parts.push(key);
        const type = await redis.type(key);
        if (type === 'string') parts.push((await redis.get(key)) ?? '');
        else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
        else if (type === 'list') parts.push(...(await redis.lrange(key, 0, -1)));
        else if (type === 'set') parts.push(...(await redis.smembers(key)));
        else if (type === 'zset') parts.push(...(await redis.zrange(key, 0, -1)));
        else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
      }
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return parts.join('\n');
}

/** The db file with its WAL, as raw text: a secret stored unsealed would show up here. */
export function readDbFiles(dbPath: string): string {
  return [dbPath, `${dbPath}-wal`]
    .filter((p) => existsSync(p))
    .map((p) => readFileSync(p).toString('latin1'))
    .join('\n');
}

/** Which of `secrets` occur in `haystack` (empty means nothing leaked). */
export function leakedSecrets(haystack: string, secrets: Iterable<string>): string[] {
  return [...secrets].filter((s) => s.length > 0 && haystack.includes(s));
}
