// A real OpenID Connect provider (the `oidc-provider` package) for Gatehouse's SSO tests.
//
// Started by tests/oidc/fixture.py: `node provider.js` with OIDC_PORT and OIDC_OTHER_PORT.
// Two issuers run in this process and share one signing key:
//   http://127.0.0.1:OIDC_PORT        the issuer orgs are configured with;
//   http://127.0.0.1:OIDC_OTHER_PORT  another issuer whose tokens verify under the same key,
//                                     so a test can show that the `iss` check (not only the
//                                     signature) rejects them.
// Clients register themselves (dynamic client registration, `POST /reg`). A client named
// "short-lived" gets ID tokens that expire after one second.
// The login page takes any email (and optional groups): there are no passwords here.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const SHORT_LIVED_CLIENT_NAME = 'short-lived';
const ACCOUNT_PREFIX = 'acct:';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'gatehouse-test-1', use: 'sig', alg: 'RS256' };

// accountId -> { email, email_verified, groups }: what the login form was given.
const accounts = new Map();

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

function configuration() {
  return {
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
    },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // Claims go into the ID token itself (not only the userinfo endpoint).
    conformIdTokenClaims: false,
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
    pkce: { required: () => true },
    ttl: {
      IdToken: (ctx, token, client) => (client && client.clientName === SHORT_LIVED_CLIENT_NAME ? 1 : 3600),
      AccessToken: 600,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, accountId) {
      const account = accounts.get(accountId);
      if (!account) return undefined;
      return {
        accountId,
        async claims() {
          return {
            sub: accountId,
            email: account.email,
            email_verified: account.email_verified,
            name: account.email.split('@')[0],
            groups: account.groups,
          };
        },
      };
    },
    // First-party test clients: consent is implied, so no consent page.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
  };
}

function loginPage(uid, issuer) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body>
<h1>Test identity provider</h1>
<p>${escapeHtml(issuer)}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Email <input type="email" name="email" id="idp-email" required></label>
  <label>Groups <input type="text" name="groups" id="idp-groups"></label>
  <label><input type="checkbox" name="email_unverified" value="1"> email not verified</label>
  <button type="submit" id="idp-submit">Sign in</button>
</form>
</body></html>`;
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(provider, issuer, req, res) {
  const url = new URL(req.url, issuer);
  const parts = url.pathname.split('/').filter(Boolean); // ["interaction", uid, ("login")]
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && parts.length === 2) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginPage(details.uid, issuer));
    return;
  }
  if (req.method === 'POST' && parts[2] === 'login') {
    const form = await formBody(req);
    const email = (form.get('email') || '').trim().toLowerCase();
    const groups = (form.get('groups') || '').split(',').map((g) => g.trim()).filter(Boolean);
    const accountId = ACCOUNT_PREFIX + email;
    accounts.set(accountId, { email, groups, email_verified: form.get('email_unverified') !== '1' });
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(404);
  res.end();
}

function serve(port) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  const oidcCallback = provider.callback();
  const server = createServer(async (req, res) => {
    try {
      if (req.url.startsWith('/interaction/')) {
        await interaction(provider, issuer, req, res);
      } else {
        oidcCallback(req, res);
      }
    } catch (error) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(error));
    }
  });
  server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${issuer}\n`));
  return server;
}

const servers = [serve(Number(process.env.OIDC_PORT)), serve(Number(process.env.OIDC_OTHER_PORT))];
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    for (const server of servers) server.close();
    process.exit(0);
  });
}
