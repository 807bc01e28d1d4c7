import { createCipheriv, createDecipheriv, createHash, randomFillSync } from 'node:crypto';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';

const FORMAT = 'gk1';
const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * IVs are cut from a buffer of CSPRNG bytes filled 4 KiB at a time, as Node's randomUUID does: a
 * call into OpenSSL per seal cost more than the seal. Every IV is a fresh, unshared slice.
 */
const IV_POOL = Buffer.alloc(IV_BYTES * 341);
let ivOffset = IV_POOL.length;

function nextIv(): Buffer {
  if (ivOffset + IV_BYTES > IV_POOL.length) {
    randomFillSync(IV_POOL);
    ivOffset = 0;
  }
  const iv = Buffer.from(IV_POOL.subarray(ivOffset, ivOffset + IV_BYTES));
  ivOffset += IV_BYTES;
  return iv;
}

export interface SealingKey {
  id: string;
  key: Buffer;
}

export type SealErrorReason = 'unknown-key' | 'authentication' | 'malformed';

export class SealError extends GrantkeeperError<'sealing_key_unusable'> {
  constructor(
    message: string,
    readonly reason: SealErrorReason,
  ) {
    super('sealing_key_unusable', message);
  }
}

/**
 * A short, stable id for a key, so a sealed value says which key opens it. Domain-separated so the id
 * is not a plain hash of the key that could be matched against other uses of the same bytes.
 */
export function keyIdFor(key: Buffer): string {
  return `k${createHash('sha256').update('grantkeeper/key-id/v1\0').update(key).digest('hex').slice(0, 10)}`;
}

/** The primary key seals; previous keys only open values sealed before a rotation. */
export class Keyring {
  readonly primary: SealingKey;
  private readonly byId = new Map<string, SealingKey>();

  constructor(primary: SealingKey, previous: SealingKey[] = []) {
    this.primary = primary;
    for (const k of [primary, ...previous]) {
      if (k.key.length !== KEY_BYTES) throw new Error(`Sealing key ${k.id} must be ${KEY_BYTES} bytes`);
      const known = this.byId.get(k.id);
      if (known && !known.key.equals(k.key))
        throw new Error(`Two different sealing keys share the id ${k.id}`);
      this.byId.set(k.id, k);
    }
  }

  get(id: string): SealingKey | undefined {
    return this.byId.get(id);
  }

  /** Primary first. */
  ids(): string[] {
    return [...this.byId.keys()];
  }
}

interface Parsed {
  keyId: string;
  iv: Buffer;
  body: Buffer;
}

/**
 * Seals strings as `gk1.<keyId>.<iv>.<ciphertext+tag>` with AES-256-GCM. The context is the
 * additional authenticated data, so a value copied to another row or field fails to open.
 */
export class Sealer {
  constructor(private readonly keyring: Keyring) {}

  seal(plaintext: string, context: string): string {
    const { id, key } = this.keyring.primary;
    const iv = nextIv();
    const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${FORMAT}.${id}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  open(sealed: string, context: string): string {
    const { keyId, iv, body } = parse(sealed, context);
    const sealingKey = this.keyring.get(keyId);
    if (!sealingKey) {
      const loaded = this.keyring.ids();
      const which =
        loaded.length === 1 ? `the loaded key is ${loaded[0]}` : `the loaded keys are ${loaded.join(', ')}`;
      throw new SealError(
        `${context} was sealed with key ${keyId}, but ${which}: set GRANTKEEPER_KEY to the key that sealed it`,
        'unknown-key',
      );
    }
    const decipher = createDecipheriv(ALGORITHM, sealingKey.key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    try {
      // Nothing is returned unless final() verifies the tag, so altered data never yields garbage.
      const plain = Buffer.concat([
        decipher.update(body.subarray(0, body.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return plain.toString('utf8');
    } catch {
      throw new SealError(
        `${context} could not be opened with key ${keyId}: wrong key material for that id, or the data was altered or copied from another field`,
        'authentication',
      );
    }
  }

  /** The id of the key new values are sealed under. */
  get primaryKeyId(): string {
    return this.keyring.primary.id;
  }

  /** Every loaded key id, primary first. */
  keyIds(): string[] {
    return this.keyring.ids();
  }

  keyIdOf(sealed: string): string {
    return parse(sealed, 'sealed value').keyId;
  }
}

function parse(sealed: string, context: string): Parsed {
  const parts = sealed.split('.');
  const [format, keyId, ivText, bodyText] = parts;
  if (
    parts.length === 4 &&
    format === FORMAT &&
    keyId &&
    ivText &&
    bodyText &&
    BASE64URL.test(ivText) &&
    BASE64URL.test(bodyText)
  ) {
    const iv = Buffer.from(ivText, 'base64url');
    const body = Buffer.from(bodyText, 'base64url');
    if (iv.length === IV_BYTES && body.length >= TAG_BYTES) return { keyId, iv, body };
  }
  // The value itself is never quoted: a malformed one may be a token stored in clear.
  throw new SealError(
    `${context} is not a sealed value (expected ${FORMAT}.<keyId>.<iv>.<data>): it is corrupted or was stored unsealed`,
    'malformed',
  );
}
