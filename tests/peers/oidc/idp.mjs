// Token endpoints that behave as three identity providers do where people configure
// them wrongly (docs/identity-providers.md), for the recipe tests. Each checks what
// that provider checks for the mistake the recipe warns about and answers its error
// the way the provider does (status, `error`, `error_description`); what it issues is
// an access token of oidc-provider's (client `sa-client`), which /api/ takes. The
// error texts are the ones these providers were seen to answer (the sources are in
// docs/identity-providers.md); where a status was not on record, the one their other
// errors of that kind have. They check nothing else of what the real ones check
// (tenants, app registrations, token contents, rate limits).
//
//   POST /entra/{tenant}/oauth2/v2.0/token   Microsoft Entra ID's v2 endpoint:
//        client credentials for ENTRA_CLIENT_ID, authenticated by the secret
//        ENTRA_SECRET (form or Basic) or by a certificate credential (ENTRA_CERT, a
//        PEM): a client_assertion whose header names the certificate by `x5t#S256`
//        (or the older SHA-1 `x5t`), signed PS256 or RS256 with its key, `aud` this
//        URL, `iss` and `sub` the client id, `exp` within the hour. `scope` must be
//        given, and be one resource's `…/.default`.
//   POST /auth0/oauth/token   Auth0: client credentials for AUTH0_CLIENT_ID and
//        AUTH0_SECRET (form or Basic); `audience` must name AUTH0_AUDIENCE; scopes
//        beyond AUTH0_SCOPES are refused; the token has all of AUTH0_SCOPES, however
//        few were asked for.
//   POST /cognito/oauth2/token   Amazon Cognito: client credentials for
//        COGNITO_CLIENT_ID and COGNITO_SECRET (Basic or form); each scope one of
//        COGNITO_SCOPES (`resource-server-identifier/scope-name`), and a bare
//        `{"error":"invalid_scope"}` for anything else; none asked: all of them.
// GET /test/stats lists `idp_refusals` (`provider: error: description`).
import crypto from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { formOf, refuser, savedToken } from './endpoint.mjs';

export const idpRefusals = [];

// The client id and secret from `Authorization: Basic` (RFC 6749 §2.3.1's form
// encoding) or the form.
function secretCredentials(req, form) {
  const auth = req.headers.authorization || '';
  if (auth.startsWith('Basic ')) {
    const pair = Buffer.from(auth.slice(6), 'base64').toString();
    const colon = pair.indexOf(':');
    const dec = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
    return colon < 0 ? {} : { id: dec(pair.slice(0, colon)), secret: dec(pair.slice(colon + 1)) };
  }
  return { id: form.get('client_id'), secret: form.get('client_secret') };
}

// An access token of oidc-provider's, as the real ones answer it (plus `extra`).
async function issue(provider, res, expiresIn, extra = {}) {
  const { value } = await savedToken(provider, 'read');
  res.end(JSON.stringify({ token_type: 'Bearer', expires_in: expiresIn, ...extra, access_token: value }));
}

// The certificate's SHA-256 and SHA-1 thumbprints, base64url (the `x5t#S256` and
// `x5t` an assertion names it by).
function thumbprints(pem) {
  const der = new crypto.X509Certificate(pem).raw;
  const hash = (alg) => crypto.createHash(alg).update(der).digest('base64url');
  return { s256: hash('sha256'), sha1: hash('sha1') };
}

async function entra(provider, req, res, url) {
  res.setHeader('content-type', 'application/json; charset=utf-8');
  const fail = refuser(res, idpRefusals, 'entra: ');
  const form = await formOf(req);
  const clientId = process.env.ENTRA_CLIENT_ID;
  if (form.get('grant_type') !== 'client_credentials') {
    return fail(400, 'unsupported_grant_type', 'AADSTS70003: The app requested an unsupported grant type.');
  }
  const assertion = form.get('client_assertion');
  if (assertion) {
    const why = await entraAssertionRefusal(assertion, form, url, clientId);
    if (why) return fail(401, 'invalid_client', why);
  } else {
    const { id, secret } = secretCredentials(req, form);
    if (id !== clientId) {
      return fail(400, 'unauthorized_client', `AADSTS700016: Application with identifier '${id}' was not found in the directory.`);
    }
    if (secret !== process.env.ENTRA_SECRET) {
      return fail(401, 'invalid_client', `AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`);
    }
  }
  const scope = form.get('scope');
  if (!scope) {
    return fail(400, 'invalid_request', "AADSTS900144: The request body must contain the following parameter: 'scope'.");
  }
  if (!/^\S+\/\.default$/.test(scope)) {
    return fail(400, 'invalid_scope', `AADSTS1002012: The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`);
  }
  return issue(provider, res, 3599, { ext_expires_in: 3599 });
}

// Why a certificate credential's assertion is refused, or undefined.
async function entraAssertionRefusal(assertion, form, url, clientId) {
  if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return 'AADSTS700023: client_assertion_type is not jwt-bearer.';
  }
  const registered = thumbprints(process.env.ENTRA_CERT);
  let header;
  try {
    header = decodeProtectedHeader(assertion);
  } catch {
    return 'AADSTS50027: JWT token is invalid or malformed.';
  }
  if (header['x5t#S256'] !== registered.s256 && header.x5t !== registered.sha1) {
    const named = header['x5t#S256'] ?? header.x5t ?? header.kid ?? '(none)';
    return `AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '${named}']`;
  }
  try {
    const { payload } = await jwtVerify(assertion, new crypto.X509Certificate(process.env.ENTRA_CERT).publicKey, {
      algorithms: ['PS256', 'RS256'],
      audience: url,
      issuer: clientId,
      subject: clientId,
      requiredClaims: ['exp', 'jti'],
    });
    if (payload.exp - Math.floor(Date.now() / 1000) > 3600) return 'AADSTS700024: Client assertion is not within its valid time range.';
  } catch (e) {
    return `AADSTS700027: Client assertion failed signature validation. (${e.code || e.message})`;
  }
  return undefined;
}

async function auth0(provider, req, res) {
  res.setHeader('content-type', 'application/json');
  const fail = refuser(res, idpRefusals, 'auth0: ');
  const form = await formOf(req);
  const { id, secret } = secretCredentials(req, form);
  if (form.get('grant_type') !== 'client_credentials') {
    return fail(403, 'unauthorized_client', 'Grant type not allowed for the client.');
  }
  if (id !== process.env.AUTH0_CLIENT_ID || secret !== process.env.AUTH0_SECRET) {
    return fail(401, 'access_denied', 'Unauthorized');
  }
  const audience = form.get('audience');
  if (!audience) {
    return fail(403, 'access_denied', 'No audience parameter was provided, and no default audience has been configured');
  }
  if (audience !== process.env.AUTH0_AUDIENCE) {
    return fail(403, 'access_denied', `Service not found: ${audience}`);
  }
  const granted = process.env.AUTH0_SCOPES.split(' ');
  const asked = (form.get('scope') || '').split(' ').filter(Boolean);
  const missing = asked.filter((s) => !granted.includes(s));
  if (missing.length) {
    return fail(403, 'access_denied', `Client has not been granted scopes: ${missing.join(' ')}`);
  }
  // Every granted scope, however few were asked for (as Auth0's support notes say).
  return issue(provider, res, 86400, { scope: granted.join(' ') });
}

async function cognito(provider, req, res) {
  res.setHeader('content-type', 'application/json;charset=UTF-8');
  const fail = refuser(res, idpRefusals, 'cognito: ');
  const form = await formOf(req);
  const { id, secret } = secretCredentials(req, form);
  if (id !== process.env.COGNITO_CLIENT_ID || secret !== process.env.COGNITO_SECRET) {
    return fail(400, 'invalid_client');
  }
  if (form.get('grant_type') !== 'client_credentials') return fail(400, 'unsupported_grant_type');
  const allowed = process.env.COGNITO_SCOPES.split(' ');
  const asked = (form.get('scope') || '').split(' ').filter(Boolean);
  if (asked.some((s) => !allowed.includes(s))) return fail(400, 'invalid_scope');
  return issue(provider, res, 3600);
}

// Serves `path` when it is one of these endpoints and its provider is configured;
// false otherwise.
export function idpRoute(provider, req, res, path, issuer) {
  if (req.method !== 'POST') return false;
  if (process.env.ENTRA_CLIENT_ID && /^\/entra\/[^/]+\/oauth2\/v2\.0\/token$/.test(path)) {
    entra(provider, req, res, `${issuer}${path}`);
    return true;
  }
  if (process.env.AUTH0_CLIENT_ID && path === '/auth0/oauth/token') {
    auth0(provider, req, res);
    return true;
  }
  if (process.env.COGNITO_CLIENT_ID && path === '/cognito/oauth2/token') {
    cognito(provider, req, res);
    return true;
  }
  return false;
}
