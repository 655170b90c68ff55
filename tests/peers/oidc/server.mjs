// oidc-provider as a real OAuth2 authorization server for the integration tests.
//
//   node server.mjs            plain HTTP on 127.0.0.1, a free port
//   TLS_CERT=… TLS_KEY=… node server.mjs   HTTPS with that certificate
//
// Prints one line `listening <port>` when ready. Besides oidc-provider's own routes it
// serves, for the tests only:
//   GET  /test/stats   {"token_requests": n, "api_requests": n, "discovery_requests": n}
//   *    /api/…        a protected API: 200 for an active access token, else 401
// With NO_RFC8414=1, /.well-known/oauth-authorization-server is a 404 (a server with
// only the OpenID Connect discovery document).
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const tlsCert = process.env.TLS_CERT;
const tlsKey = process.env.TLS_KEY;
const scheme = tlsCert ? 'https' : 'http';

// Credentials with every character RFC 6749 §2.3.1 makes interesting.
export const clients = [
  { client_id: 'basic-client', client_secret: 'basic-secret', token_endpoint_auth_method: 'client_secret_basic', scope: 'read write' },
  { client_id: 'post-client', client_secret: 'post-secret', token_endpoint_auth_method: 'client_secret_post', scope: 'read write' },
  { client_id: '1PpG/Q 1', client_secret: 'z/tZ9VwFZqApmIQ+ZH1I5pLk/uB4ud:X2/8bL+wfFTt1rFw=', token_endpoint_auth_method: 'client_secret_basic', scope: 'read write' },
  { client_id: 'a:b+c%d e', client_secret: 'p:q+r%s t&u=v', token_endpoint_auth_method: 'client_secret_basic', scope: 'read' },
  { client_id: 'short-client', client_secret: 'short-secret', token_endpoint_auth_method: 'client_secret_basic', scope: 'read' },
  { client_id: 'jwt-client', client_secret: 'jwt-secret-0123456789abcdef-0123456789abcdef', token_endpoint_auth_method: 'client_secret_jwt', scope: 'read write' },
];
// private_key_jwt: a client whose public keys the test passes in (PKJWT_JWKS, a JWK Set).
if (process.env.PKJWT_JWKS) {
  clients.push({ client_id: 'pkjwt-client', token_endpoint_auth_method: 'private_key_jwt', jwks: JSON.parse(process.env.PKJWT_JWKS), scope: 'read write' });
}
for (const [i, c] of clients.entries()) {
  clients[i] = { ...c, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] };
}

const RESOURCE = 'https://api.example.test/';

// A signing key for this run. Generated as PEM and re-imported before the JWK export:
// exporting the KeyObject that generateKeyPairSync returns can deadlock Node 20 when
// the garbage collector frees the key-generation job at the same moment.
const { privateKey: pem } = crypto.generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const jwk = { ...crypto.createPrivateKey(pem).export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

let tokenRequests = 0;
let apiRequests = 0;
let discoveryRequests = 0;

function start(port) {
  const issuer = `${scheme}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [jwk] },
    scopes: ['read', 'write', 'admin'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator === RESOURCE) {
            return { scope: 'read', audience: RESOURCE, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
          }
          throw new errors.InvalidTarget();
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token, client) => (client.clientId === 'short-client' ? 2 : 600),
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  const callback = provider.callback();
  const handler = async (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/token') tokenRequests += 1;
    if (path.startsWith('/.well-known/')) discoveryRequests += 1;
    if (path === '/test/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ token_requests: tokenRequests, api_requests: apiRequests, discovery_requests: discoveryRequests }));
      return;
    }
    // NO_RFC8414=1: a server with only the OpenID Connect discovery document.
    if (process.env.NO_RFC8414 && path === '/.well-known/oauth-authorization-server') {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (path.startsWith('/api/')) {
      apiRequests += 1;
      const auth = req.headers.authorization || '';
      const value = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      const token = value ? await provider.ClientCredentials.find(value) : undefined;
      res.setHeader('content-type', 'application/json');
      if (!token || token.isExpired) {
        res.statusCode = 401;
        res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
      }
      res.end(JSON.stringify({ ok: true, client_id: token.clientId, path }));
      return;
    }
    callback(req, res);
  };
  return handler;
}

// Listen first (port 0 picks a free one), then build the provider with the real issuer.
let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = tlsCert
  ? https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, (q, s) => handler(q, s))
  : http.createServer((q, s) => handler(q, s));
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  handler = start(port);
  console.log(`listening ${port}`);
});
process.on('SIGTERM', () => process.exit(0));
// Stop with the test process: stdin closes when the parent dies.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
