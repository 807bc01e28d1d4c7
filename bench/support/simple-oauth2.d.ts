/** The slice of simple-oauth2 5 the bench uses (the package ships no types). */
declare module 'simple-oauth2' {
  export interface Token {
    access_token: string;
    refresh_token?: string;
    expires_in?: number;
    [field: string]: unknown;
  }
  export interface AccessToken {
    token: Token;
    refresh(params?: Record<string, unknown>): Promise<AccessToken>;
  }
  export class AuthorizationCode {
    constructor(config: {
      client: { id: string; secret: string };
      auth: { tokenHost: string; tokenPath?: string };
      options?: { authorizationMethod?: 'header' | 'body' };
    });
    createToken(token: Token): AccessToken;
  }
}
