// oidc-provider as a real OAuth2 authorization server for the integration tests.
//
//   node server.mjs            plain HTTP on 127.0.0.1, a free port
//   TLS_CERT=… TLS_KEY=… node server.mjs   HTTPS with that certificate
//
// Prints one line `listening <port>` when ready. Besides oidc-provider's own routes it
// serves, for the tests only:
//   GET  /test/stats   {"token_requests": n, "api_requests": n, "discovery_requests": n}
//   *    /api/…        a protected API: 200 for an active access token, else 401; a
//                      DPoP-bound token only as `Authorization: DPoP` with a proof that
//                      verifies (signature, typ, jwk, htm, htu, iat, jti replay, ath,
//                      the token's cnf.jkt, and with API_DPOP_NONCE=1 the API's nonce)
// DPoP (RFC 9449) is on, as oidc-provider has it by default; with DPOP_NONCE=1 the token
// endpoint requires its nonces; with DPOP_OFF=1 it has no DPoP.
// With NO_RFC8414=1, /.well-known/oauth-authorization-server is a 404 (a server with
// only the OpenID Connect discovery document).
// With SA_EMAIL and SA_PUBLIC_KEY (an SPKI PEM), and SA_KID if the key has an id,
// POST /sa/token is a service account's token endpoint as Google's is (RFC 7523 §2.1):
// grant_type jwt-bearer and an `assertion` only, no client authentication; the
// assertion verified with that key (RS256 or ES256), `iss` the email, `aud` this URL,
// `iat` and `exp` present and at most an hour apart, `kid` SA_KID, a `scope` claim. It
// answers an access token of oidc-provider's (client `sa-client`, the assertion's
// scope), which /api/ takes; /test/stats lists what each token was for (`sa_tokens`:
// sub and scope) and why assertions were refused (`sa_refusals`).
// idp.mjs adds token endpoints that behave as Entra ID, Auth0 and Cognito do for the
// mistakes docs/identity-providers.md warns about (with their ENTRA_*, AUTH0_* and
// COGNITO_* variables); /test/stats lists their refusals (`idp_refusals`).
// With STS_SUBJECT_ISSUER, STS_SUBJECT_KEY (an SPKI PEM) and STS_AUDIENCE, POST
// /sts/token is a security token service as GCP's is (RFC 8693): grant_type
// token-exchange, a JWT subject_token (type jwt or id_token) verified with that key,
// `iss` STS_SUBJECT_ISSUER, `exp` in the future; requested_token_type access_token;
// `audience` STS_AUDIENCE; a `scope`; no client authentication. It answers an access
// token of oidc-provider's with issued_token_type access_token, or with STS_ANSWER=id_token
// an ID token's type, with STS_ANSWER=missing no issued_token_type. /test/stats lists
// `sts_tokens` (sub, scope) and `sts_refusals`.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose';
import { idpRefusals, idpRoute } from './idp.mjs';
import { formOf, refuser, savedToken } from './endpoint.mjs';

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
  // The client the service account's tokens are issued to (never authenticates).
  { client_id: 'sa-client', client_secret: crypto.randomBytes(24).toString('base64url'), token_endpoint_auth_method: 'client_secret_basic', scope: 'read write' },
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
// API requests whose DPoP proof verified, and why the others were refused.
let apiDpop = 0;
const apiRefusals = [];
// The API's DPoP nonce (API_DPOP_NONCE=1): a new one every 5 requests.
let apiNonce = crypto.randomBytes(16).toString('base64url');
const seenJti = new Set();
// The service account's tokens (sub and scope) and refused assertions.
const saTokens = [];
const saRefusals = [];

// The security token service's tokens and refusals.
const stsTokens = [];
const stsRefusals = [];

// POST /sa/token: a service account's token endpoint, as Google's checks a JWT-bearer
// grant (see the top of this file).
async function serviceAccountToken(provider, req, res, audience) {
  res.setHeader('content-type', 'application/json');
  const fail = refuser(res, saRefusals);
  if (req.method !== 'POST') return fail(405, 'invalid_request', 'POST only');
  const form = await formOf(req);
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    return fail(400, 'unsupported_grant_type', 'Invalid grant_type');
  }
  if (req.headers.authorization || form.has('client_secret') || form.has('client_assertion')) {
    return fail(400, 'invalid_request', 'no client authentication is taken with this grant');
  }
  const assertion = form.get('assertion');
  if (!assertion) return fail(400, 'invalid_request', 'Missing required parameter: assertion');
  let verified;
  try {
    verified = await jwtVerify(assertion, crypto.createPublicKey(process.env.SA_PUBLIC_KEY), {
      algorithms: ['RS256', 'ES256'],
      issuer: process.env.SA_EMAIL,
      audience,
      requiredClaims: ['iat', 'exp'],
      clockTolerance: 60,
    });
  } catch (e) {
    // A claim Google finds wrong is named; a signature it cannot verify (another key,
    // another algorithm) is Google's one sentence.
    if (String(e.code).startsWith('ERR_JWT_')) return fail(400, 'invalid_grant', `Invalid JWT: ${e.code}`);
    return fail(400, 'invalid_grant', 'Invalid JWT Signature.');
  }
  const { payload, protectedHeader } = verified;
  if (process.env.SA_KID && protectedHeader.kid !== process.env.SA_KID) {
    return fail(400, 'invalid_grant', 'Invalid JWT Signature.');
  }
  if (payload.exp - payload.iat > 3600) {
    return fail(400, 'invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
  }
  if (typeof payload.scope !== 'string' || !payload.scope) {
    return fail(400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
  }
  const { value, expiresIn } = await savedToken(provider, payload.scope);
  saTokens.push({ sub: payload.sub ?? null, scope: payload.scope });
  res.end(JSON.stringify({ access_token: value, expires_in: expiresIn, token_type: 'Bearer' }));
}

// POST /sts/token: a security token service as GCP's is (see the top of this file).
async function stsToken(provider, req, res) {
  res.setHeader('content-type', 'application/json');
  const fail = refuser(res, stsRefusals);
  if (req.method !== 'POST') return fail(405, 'invalid_request', 'POST only');
  const form = await formOf(req);
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') {
    return fail(400, 'unsupported_grant_type', 'Invalid grant_type');
  }
  if (req.headers.authorization || form.has('client_secret') || form.has('client_assertion')) {
    return fail(400, 'invalid_request', 'no client authentication is taken here');
  }
  const subjectType = form.get('subject_token_type');
  if (!['urn:ietf:params:oauth:token-type:jwt', 'urn:ietf:params:oauth:token-type:id_token'].includes(subjectType)) {
    return fail(400, 'invalid_request', `unsupported subject_token_type ${subjectType}`);
  }
  if (form.get('requested_token_type') !== 'urn:ietf:params:oauth:token-type:access_token') {
    return fail(400, 'invalid_request', 'requested_token_type must be an access token');
  }
  if (form.get('audience') !== process.env.STS_AUDIENCE) return fail(400, 'invalid_target', 'audience');
  const scope = form.get('scope');
  if (!scope) return fail(400, 'invalid_scope', 'scope is required');
  let payload;
  try {
    ({ payload } = await jwtVerify(form.get('subject_token') || '', crypto.createPublicKey(process.env.STS_SUBJECT_KEY), {
      algorithms: ['RS256', 'ES256'],
      issuer: process.env.STS_SUBJECT_ISSUER,
      requiredClaims: ['exp', 'sub'],
    }));
  } catch (e) {
    return fail(400, 'invalid_grant', `subject_token: ${e.code || e.message}`);
  }
  const { value, expiresIn } = await savedToken(provider, 'read');
  stsTokens.push({ sub: payload.sub, scope });
  const answer = { access_token: value, token_type: 'Bearer', expires_in: expiresIn };
  if (process.env.STS_ANSWER === 'id_token') answer.issued_token_type = 'urn:ietf:params:oauth:token-type:id_token';
  else if (process.env.STS_ANSWER !== 'missing') answer.issued_token_type = 'urn:ietf:params:oauth:token-type:access_token';
  res.end(JSON.stringify(answer));
}

// Whether a DPoP `proof` for `req` to `url` with `token` (a bound one) verifies; the
// reason when it does not.
async function dpopRefusal(req, url, accessToken, token) {
  if (!token.jkt) return 'a Bearer token sent as DPoP';
  const proof = req.headers.dpop;
  if (!proof || Array.isArray(proof)) return 'no DPoP proof';
  let jwt;
  try {
    jwt = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'] });
  } catch (e) {
    return `proof does not verify: ${e.code || e.message}`;
  }
  const { payload, protectedHeader } = jwt;
  if (protectedHeader.jwk.d) return 'private key in the proof';
  if (payload.htm !== req.method) return 'htm';
  if (payload.htu !== url) return `htu ${payload.htu} for ${url}`;
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > 60) return 'iat';
  if (typeof payload.jti !== 'string' || seenJti.has(payload.jti)) return 'jti replayed';
  seenJti.add(payload.jti);
  if (payload.ath !== crypto.createHash('sha256').update(accessToken).digest('base64url')) return 'ath';
  if (await calculateJwkThumbprint(protectedHeader.jwk) !== token.jkt) return 'cnf.jkt';
  if (process.env.API_DPOP_NONCE && payload.nonce !== apiNonce) return 'use_dpop_nonce';
  return undefined;
}

function start(port) {
  const issuer = `${scheme}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [jwk] },
    scopes: ['read', 'write', 'admin'],
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // DPOP_OFF=1: a server without DPoP (it ignores the proof, answers Bearer).
      dPoP: process.env.DPOP_NONCE
        ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
        : { enabled: !process.env.DPOP_OFF },
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
    if (path.endsWith('/token')) tokenRequests += 1;
    if (path.startsWith('/.well-known/')) discoveryRequests += 1;
    if (path === '/test/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        token_requests: tokenRequests, api_requests: apiRequests, discovery_requests: discoveryRequests,
        api_dpop: apiDpop, api_refusals: apiRefusals, sa_tokens: saTokens, sa_refusals: saRefusals,
        sts_tokens: stsTokens, sts_refusals: stsRefusals, idp_refusals: idpRefusals,
      }));
      return;
    }
    // NO_RFC8414=1: a server with only the OpenID Connect discovery document.
    if (process.env.NO_RFC8414 && path === '/.well-known/oauth-authorization-server') {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (path === '/sa/token' && process.env.SA_EMAIL) {
      return serviceAccountToken(provider, req, res, `${issuerOf(req)}/sa/token`);
    }
    if (path === '/sts/token' && process.env.STS_SUBJECT_ISSUER) {
      return stsToken(provider, req, res);
    }
    if (idpRoute(provider, req, res, path, issuerOf(req))) return;
    if (path.startsWith('/api/')) {
      apiRequests += 1;
      const auth = req.headers.authorization || '';
      const [scheme, value] = auth.split(' ', 2);
      const dpop = scheme === 'DPoP';
      const token = value && (dpop || scheme === 'Bearer') ? await provider.ClientCredentials.find(value) : undefined;
      res.setHeader('content-type', 'application/json');
      const refuse = (error, why) => {
        apiRefusals.push(why);
        res.statusCode = 401;
        res.setHeader('www-authenticate', `${dpop ? 'DPoP' : 'Bearer'} error="${error}"`);
        if (error === 'use_dpop_nonce') res.setHeader('dpop-nonce', apiNonce);
        res.end(JSON.stringify({ error }));
      };
      if (!token || token.isExpired) return refuse('invalid_token', 'no active token');
      if (token.jkt && !dpop) return refuse('invalid_token', 'a DPoP token sent as Bearer');
      if (dpop) {
        const why = await dpopRefusal(req, `${issuerOf(req)}${path}`, value, token);
        if (why === 'use_dpop_nonce') return refuse('use_dpop_nonce', why);
        if (why) return refuse('invalid_token', why);
        apiDpop += 1;
        if (process.env.API_DPOP_NONCE && apiDpop % 5 === 0) {
          apiNonce = crypto.randomBytes(16).toString('base64url');
          res.setHeader('dpop-nonce', apiNonce);
        }
      }
      res.end(JSON.stringify({ ok: true, client_id: token.clientId, path, token_type: token.tokenType }));
      return;
    }
    callback(req, res);
  };
  return handler;
}

// The issuer's scheme, host and port, as the API's htu starts.
function issuerOf(req) {
  return `${scheme}://${req.headers.host}`;
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
