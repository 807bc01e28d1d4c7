import { readFileSync } from 'node:fs';
import { z } from 'zod';
import {
  type AssertionAudience,
  certificateThumbprint,
  type PrivateKeyInput,
  parsePrivateKey,
  pkcs8Pem,
  SIGNING_ALGS,
} from '../crypto/signing-key.js';
import type { ProviderProfile } from '../oauth/providers.js';
import { UserError } from './user-error.js';

/** The `client add` flags that register a private key for private_key_jwt. */
export interface SigningKeyOptions {
  privateKeyFile?: string;
  keyId?: string;
  alg?: string;
  x5tFromCert?: string;
  assertionAudience?: string;
}

/** The flags that only mean something with a private key, by their option names. */
const KEY_FLAGS = {
  keyId: '--key-id',
  alg: '--alg',
  x5tFromCert: '--x5t-from-cert',
  assertionAudience: '--assertion-audience',
} as const;

const algSchema = z.enum(SIGNING_ALGS);
const audienceSchema = z
  .enum(['token-endpoint', 'issuer'])
  .transform((v): AssertionAudience => (v === 'issuer' ? 'issuer' : 'token_endpoint'));
const keyIdSchema = z.string().regex(/^[\x21-\x7e]{1,256}$/);

/** A file an operator named, read whole; a missing or unreadable one is a usage error naming it. */
export function readOperatorFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new UserError(`cannot read ${what} ${path} (${code})`, 2);
  }
}

/** Parses a flag's value with a schema: a bad one is a usage error in one line naming the flag. */
export function flagValue<T>(schema: z.ZodType<T>, value: string, flag: string, expected: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new UserError(`${flag} "${value.slice(0, 40)}" is not supported: expected ${expected}`, 2);
  return parsed.data;
}

/**
 * The private key the flags name, checked before anything is stored: readable, a PEM private key
 * of a type the algorithm signs with, and (with a certificate) the key that certificate certifies.
 */
export function readSigningKeyOptions(
  opts: SigningKeyOptions,
  profile: Pick<ProviderProfile, 'issuer'>,
): PrivateKeyInput | undefined {
  if (opts.privateKeyFile === undefined) {
    const stray = Object.entries(KEY_FLAGS).find(
      ([option]) => opts[option as keyof SigningKeyOptions] !== undefined,
    );
    if (stray) throw new UserError(`${stray[1]} goes with --private-key-file`, 2);
    return undefined;
  }
  const alg =
    opts.alg === undefined ? undefined : flagValue(algSchema, opts.alg, '--alg', SIGNING_ALGS.join(', '));
  const audience =
    opts.assertionAudience === undefined
      ? 'token_endpoint'
      : flagValue(audienceSchema, opts.assertionAudience, '--assertion-audience', 'token-endpoint or issuer');
  if (audience === 'issuer' && !profile.issuer) {
    throw new UserError('--assertion-audience issuer needs a provider with a known issuer', 2);
  }
  const keyId =
    opts.keyId === undefined ? undefined : flagValue(keyIdSchema, opts.keyId, '--key-id', 'printable text');
  const parsed = parsePrivateKey(
    readOperatorFile(opts.privateKeyFile, 'the private key file'),
    opts.privateKeyFile,
    alg,
  );
  const x5tS256 =
    opts.x5tFromCert === undefined
      ? undefined
      : certificateThumbprint(
          readOperatorFile(opts.x5tFromCert, 'the certificate'),
          parsed.key,
          opts.x5tFromCert,
        );
  return {
    pem: pkcs8Pem(parsed.key),
    alg: parsed.alg,
    audience,
    ...(keyId ? { keyId } : {}),
    ...(x5tS256 ? { x5tS256 } : {}),
  };
}
