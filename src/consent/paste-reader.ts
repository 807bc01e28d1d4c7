import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { ConsentError, codeFromPaste } from './callback.js';

/**
 * Manual mode for headless machines: reads the first non-empty line from `input` (the redirect URL
 * the browser ended on, its query, or the bare code) and returns the code, state checked.
 */
export async function readPastedCode(
  input: Readable,
  opts: { state: string; timeoutMs: number },
): Promise<string> {
  const lines = createInterface({ input, terminal: false, crlfDelay: Number.POSITIVE_INFINITY });
  let timer: NodeJS.Timeout | undefined;
  try {
    const line = await new Promise<string>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ConsentError(
              `nothing was pasted within ${Math.round(opts.timeoutMs / 1000)} s; run seed again (or raise --timeout)`,
            ),
          ),
        opts.timeoutMs,
      );
      lines.on('line', (text) => {
        if (text.trim() !== '') resolve(text);
      });
      lines.on('close', () =>
        reject(new ConsentError('the input ended before a redirect URL or code was pasted')),
      );
    });
    return codeFromPaste(line, opts.state);
  } finally {
    clearTimeout(timer);
    lines.close();
  }
}
