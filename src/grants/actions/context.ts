import type { TokenClient } from '../../oauth/token-client.js';
import type { RefreshTimingPolicy } from '../../policy/refresh-timing.js';
import type { AccessTokenReader } from '../../refresh/access-token-reader.js';
import type { ClientRepository, GrantRepository, RefreshScheduler } from '../ports.js';

/**
 * What the grant actions need, whoever calls them (the API, the CLI, the library): the store's
 * repositories and the refresh machinery of this process.
 */
export interface GrantActionContext {
  grants: GrantRepository;
  clients: ClientRepository;
  reader: Pick<AccessTokenReader, 'readGrant'>;
  scheduler: RefreshScheduler;
  tokenClient: Pick<TokenClient, 'revoke'>;
  timing: RefreshTimingPolicy;
  leaseMs: number;
  inDoubtGraceMs: number;
  now?: () => number;
}
