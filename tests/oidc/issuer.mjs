// A real OIDC issuer for Concierge's tests: oidc-provider (a certified OpenID provider) shaped
// like Keycloak — issuer path /realms/ops, Keycloak's endpoint paths, client-credentials access
// tokens as JWTs (RS256, header typ at+jwt) carrying Keycloak's role claims
// (realm_access.roles, resource_access.<audience>.roles) and preferred_username.
//
// Clients (client_secret_basic): ops-reader / reader-secret  → realm role concierge-read
//                                ops-admin  / admin-secret   → client role concierge-admin
// Token request: POST /realms/ops/protocol/openid-connect/token
//   grant_type=client_credentials&resource=urn:concierge:api&scope=api
// With CONSOLE_REDIRECT_URI, also the console's public client (concierge-console: the
// authorization code flow with PKCE, no secret) and oidc-provider's development sign-in pages
// (any login; the person "ops-person" has the realm role concierge-read).
// Usage: node issuer.mjs PORT AUDIENCE [CONSOLE_REDIRECT_URI]   (prints "ready <issuer>")
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const audience = process.argv[3] || 'concierge';
const consoleRedirect = process.argv[4];
const mount = '/realms/ops';
const issuer = `http://127.0.0.1:${port}${mount}`;

const signing = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const roles = {
  'ops-reader': { realm: ['concierge-read', 'offline_access'], client: [] },
  'ops-admin': { realm: ['offline_access'], client: ['concierge-admin'] },
  'ops-person': { realm: ['concierge-read'], client: [] },
};
const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'api',
});

const clients = [client('ops-reader', 'reader-secret'), client('ops-admin', 'admin-secret')];
if (consoleRedirect) {
  clients.push({
    client_id: 'concierge-console',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [consoleRedirect],
    scope: 'openid api',
  });
}

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [{ ...signing, kid: 'rsa-1', use: 'sig', alg: 'RS256' }] },
  routes: {
    token: '/protocol/openid-connect/token',
    jwks: '/protocol/openid-connect/certs',
  },
  scopes: ['openid', 'api'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: Boolean(consoleRedirect) },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:concierge:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => {
    // A person's token (the console's sign-in) carries the person's roles, a service
    // account's its client's.
    const id = token.accountId || token.clientId;
    const r = roles[id] || { realm: [], client: [] };
    return {
      preferred_username: token.accountId ? id : `service-account-${id}`,
      realm_access: { roles: r.realm },
      resource_access: { [audience]: { roles: r.client } },
    };
  },
});

const callback = provider.callback();
http
  .createServer((req, res) => {
    if (req.url.startsWith(mount)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(mount.length) || '/';
      return callback(req, res);
    }
    res.writeHead(404).end();
  })
  .listen(port, '127.0.0.1', () => {
    console.log(`ready ${issuer}`);
    // The test reads only that line and closes the pipe: oidc-provider's later notices
    // (console.log/info) go to stderr, or writing them would kill this process (EPIPE).
    console.log = console.error;
    console.info = console.error;
  });
