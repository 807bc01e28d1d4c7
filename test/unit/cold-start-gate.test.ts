import { describe, expect, it } from 'vitest';
import { ColdStartGate } from '../../src/pacing/cold-start-gate.js';

/** Whether a promise has settled by the next macrotask, without waiting for it. */
async function settledYet(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => {
    done = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('ColdStartGate: a cold client sends one request first', () => {
  it('lets the first request go as the canary and holds the rest until it is answered', async () => {
    const gate = new ColdStartGate(Date.now, 60_000, 5_000);
    expect(await gate.pass('c1')).toBe('canary');
    const held = gate.pass('c1');
    const waiting = [held, gate.pass('c1')];
    expect(await settledYet(held)).toBe(false);
    // Another client is not held by this one's canary.
    expect(await gate.pass('c2')).toBe('canary');

    gate.settled('c1', 'answered');
    expect(await Promise.all(waiting)).toEqual(['go', 'go']);
    expect(await gate.pass('c1')).toBe('go');
  });

  it('hands the turn to one waiter when the canary ends without an answer', async () => {
    const gate = new ColdStartGate(Date.now, 60_000, 5_000);
    expect(await gate.pass('c1')).toBe('canary');
    const first = gate.pass('c1');
    const second = gate.pass('c1');
    gate.settled('c1', 'unanswered');
    expect(await first).toBe('canary');
    expect(await settledYet(second)).toBe(false);
    gate.settled('c1', 'answered');
    expect(await second).toBe('go');
  });

  it('stops the waiters without a new canary when the canary learns nobody should send', async () => {
    const gate = new ColdStartGate(Date.now, 60_000, 5_000);
    expect(await gate.pass('c1')).toBe('canary');
    const waiting = [gate.pass('c1'), gate.pass('c1')];
    gate.settled('c1', 'held');
    expect(await Promise.all(waiting)).toEqual(['held', 'held']);
  });

  it('lets the rest go once the canary has been out for the wait: the provider is only slow', async () => {
    let now = 1_000_000;
    const gate = new ColdStartGate(() => now, 60_000, 40);
    expect(await gate.pass('c1')).toBe('canary');
    const waiting = gate.pass('c1');
    expect(await settledYet(waiting)).toBe(false);
    now += 40;
    expect(await waiting).toBe('go');
    // Still out and slow: later requests go at once, no second canary.
    expect(await gate.pass('c1')).toBe('go');
  });

  it('replaces a canary that never told within a cold spell', async () => {
    let now = 1_000_000;
    const gate = new ColdStartGate(() => now, 60_000, 1_000);
    expect(await gate.pass('c1')).toBe('canary');
    now += 59_999;
    expect(await gate.pass('c1')).toBe('go');
    now += 1;
    expect(await gate.pass('c1')).toBe('canary');
  });

  it('turns cold again once no answer came for the cold spell', async () => {
    let now = 1_000_000;
    const gate = new ColdStartGate(() => now, 60_000, 5_000);
    expect(await gate.pass('c1')).toBe('canary');
    gate.settled('c1', 'answered');
    now += 59_999;
    expect(await gate.pass('c1')).toBe('go');
    now += 1;
    expect(await gate.pass('c1')).toBe('canary');
  });
});
