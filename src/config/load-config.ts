import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { type Config, configSchema, ENV_VARS, SECRET_ENV_VARS, type Secrets } from './config-schema.js';

export interface LoadedConfig {
  config: Config;
  /** Secrets stay out of `config` so it can be logged; they are read from the environment only. */
  secrets: Secrets;
  configPath?: string;
}

/**
 * Reads the optional JSON config file (GRANTKEEPER_CONFIG or --config), lays the environment over
 * it and parses the result. Any bad value is one bad_config error naming where it came from.
 */
export function loadConfig(env: NodeJS.ProcessEnv, configPathFlag?: string): LoadedConfig {
  const configPath = configPathFlag ?? nonEmpty(env.GRANTKEEPER_CONFIG);
  const fromFile = configPath === undefined ? {} : readConfigFile(configPath);
  const fromEnv: Record<string, string> = {};
  for (const [name, field] of Object.entries(ENV_VARS)) {
    const value = nonEmpty(env[name]);
    if (value !== undefined) fromEnv[field] = value;
  }
  const parsed = configSchema.safeParse({ ...fromFile, ...fromEnv });
  if (!parsed.success) {
    throw new GrantkeeperError('bad_config', describeIssues(parsed.error, fromEnv, configPath));
  }
  const secrets: Secrets = {};
  for (const [name, { field }] of Object.entries(SECRET_ENV_VARS)) {
    const value = nonEmpty(env[name]);
    if (value !== undefined) secrets[field] = value;
  }
  const keySources = (['GRANTKEEPER_KEY', 'GRANTKEEPER_KEY_FILE', 'GRANTKEEPER_KEY_COMMAND'] as const).filter(
    (name) => secrets[SECRET_ENV_VARS[name].field] !== undefined,
  );
  if (keySources.length > 1) {
    throw new GrantkeeperError(
      'bad_config',
      `set only one of ${keySources.join(', ')}: each names the sealing key`,
    );
  }
  return {
    config: parsed.data,
    secrets,
    ...(configPath ? { configPath: resolve(configPath) } : {}),
  };
}

const SECRET_BEARING_FIELDS = new Set(['redisUrl', 'webhookUrls', 'databaseUrl']);

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new GrantkeeperError(
      'bad_config',
      `cannot read the config file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    // V8's message quotes the text around the error, which may be a password: give the position only.
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new GrantkeeperError(
      'bad_config',
      `the config file ${path} is not valid JSON${position ? ` (at character ${position})` : ''}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GrantkeeperError('bad_config', `the config file ${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

function describeIssues(error: z.ZodError, fromEnv: Record<string, string>, configPath?: string): string {
  const envByField = Object.fromEntries(Object.entries(ENV_VARS).map(([name, field]) => [field, name]));
  const lines = error.issues.map((issue) => {
    const field = String(issue.path[0] ?? '');
    const where =
      field in fromEnv
        ? // Database, Redis and webhook URLs may carry a password or token: name the variable, not its value.
          `${envByField[field]}${SECRET_BEARING_FIELDS.has(field) ? '' : `=${JSON.stringify(fromEnv[field])}`}`
        : `${issue.path.join('.') || '(top level)'} in ${configPath ?? 'the config'}`;
    return `${where}: ${issue.message}`;
  });
  return `invalid configuration: ${lines.join('; ')}`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}
