// What the test peer's own token endpoints share (server.mjs's `/sa/token` and
// `/sts/token`, idp.mjs's provider look-alikes): reading the form, answering an OAuth
// error and keeping it for /test/stats, and issuing an access token the peer's API
// takes.

// A form body.
export function formOf(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

// `fail(status, error, description)` for `res`: the RFC 6749 §5.2 body (no
// `error_description` when `description` is undefined, as Cognito answers), and
// `prefix error: description` kept in `refusals`.
export function refuser(res, refusals, prefix = '') {
  return (status, error, description) => {
    refusals.push(`${prefix}${error}: ${description ?? ''}`);
    res.statusCode = status;
    const body = description === undefined ? { error } : { error, error_description: description };
    res.end(JSON.stringify(body));
  };
}

// An access token of oidc-provider's for client `sa-client` with `scope`, saved so
// that /api/ takes it: its value and lifetime in seconds.
export async function savedToken(provider, scope) {
  const client = await provider.Client.find('sa-client');
  const token = new provider.ClientCredentials({ client, scope });
  return { value: await token.save(), expiresIn: token.expiration };
}
