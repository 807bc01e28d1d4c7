import type { Grant, GrantState, RecordedRefreshEvent } from '../grant.js';
import type { Client, ClientRepository, GrantCursor, GrantRepository } from '../ports.js';

export interface GrantListQuery {
  /** The grants the caller may see; null: all of them. */
  grantIds: readonly string[] | null;
  labelContains?: string | undefined;
  /** A client's name; a name no client has lists nothing. */
  clientName?: string | undefined;
  state?: GrantState | undefined;
  after?: GrantCursor | undefined;
  limit: number;
  /** Recent refresh events per grant; 0 for none. */
  events: number;
}

export interface ListedGrant {
  grant: Grant;
  client: Client | undefined;
  /** Present when events were asked for. */
  events?: RecordedRefreshEvent[];
}

/** One page of grants in listing order (label, then id), with their clients and recent events. */
export async function listGrants(
  ctx: { grants: GrantRepository; clients: ClientRepository },
  query: GrantListQuery,
): Promise<{ listed: ListedGrant[]; more: boolean }> {
  const clients = await ctx.clients.list();
  const byId = new Map(clients.map((c) => [c.id, c]));
  const clientRef = query.clientName ? clients.find((c) => c.name === query.clientName)?.id : undefined;
  if (query.clientName && !clientRef) return { listed: [], more: false };
  // One more than asked: whether it exists says if there is a next page.
  const found = await ctx.grants.page(
    {
      grantIds: query.grantIds,
      ...(query.labelContains ? { labelContains: query.labelContains } : {}),
      ...(clientRef ? { clientRef } : {}),
      ...(query.state ? { state: query.state } : {}),
    },
    { limit: query.limit + 1, ...(query.after ? { after: query.after } : {}) },
  );
  const page = found.slice(0, query.limit);
  const eventsOf = new Map<string, RecordedRefreshEvent[]>();
  if (query.events) {
    const recent = await ctx.grants.recentEventsOf(
      page.map((g) => g.id),
      query.events,
    );
    for (const e of recent) eventsOf.set(e.grantId, [...(eventsOf.get(e.grantId) ?? []), e]);
  }
  return {
    listed: page.map((grant) => ({
      grant,
      client: byId.get(grant.clientRef),
      ...(query.events ? { events: eventsOf.get(grant.id) ?? [] } : {}),
    })),
    more: found.length > query.limit,
  };
}
