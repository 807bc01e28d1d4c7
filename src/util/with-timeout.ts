/** What `withTimeout` answers when the time ran out first. */
export const TIMED_OUT = Symbol('timed out');

/**
 * The promise's value, or TIMED_OUT once `ms` have passed; the timer never outlives the race. A
 * rejection after the timeout is swallowed (nobody is listening any more); one before it rejects.
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  promise.catch(() => {});
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
