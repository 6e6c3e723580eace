// Better Auth + @better-auth/oauth-provider on SQLite (better-sqlite3), set
// up as a user would to compare with atsso: email/password accounts, the JWT
// plugin signing with RS256 (its default is EdDSA), a confidential client
// (client_secret_basic, PKCE), refresh tokens through offline_access, rate
// limits off (the plugin's default allows 20 token requests a minute).
//
// Usage: PORT=4002 DATA_DIR=/tmp/x node start.mjs
// Prints one line `PEER_READY {target json}` once a signed-in session exists
// and consent for the client is remembered (bench/README.md: the contract).

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { betterAuth } from 'better-auth';
import { getMigrations } from 'better-auth/db/migration';
import { toNodeHandler } from 'better-auth/node';
import { jwt } from 'better-auth/plugins';
import { oauthProvider } from '@better-auth/oauth-provider';

const PORT = Number(process.env.PORT || 4002);
const HOST = '127.0.0.1';
const ORIGIN = `http://${HOST}:${PORT}`;
const BASE_URL = `${ORIGIN}/api/auth`; // Better Auth's default base path; also the issuer
const DATA_DIR = process.env.DATA_DIR || mkdtempSync(join(tmpdir(), 'bench-better-auth-'));
const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const SCOPE = 'openid profile offline_access';
const EMAIL = 'bench@example.test';
const PASSWORD = randomBytes(12).toString('base64url');
const version = (p) => JSON.parse(readFileSync(new URL(`./node_modules/${p}/package.json`, import.meta.url))).version;

const db = new Database(join(DATA_DIR, 'better-auth.sqlite'));
// better-sqlite3's documented recommendation for performance.
db.pragma('journal_mode = WAL');

const auth = betterAuth({
  baseURL: BASE_URL,
  secret: randomBytes(32).toString('base64url'),
  database: db,
  emailAndPassword: { enabled: true },
  rateLimit: { enabled: false },
  telemetry: { enabled: false },
  plugins: [
    jwt({ jwks: { keyPairConfig: { alg: 'RS256', modulusLength: 2048 } } }),
    oauthProvider({
      loginPage: '/login',
      consentPage: '/consent',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      rateLimit: { token: false, authorize: false, introspect: false, revoke: false, register: false, userinfo: false },
    }),
  ],
});

const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const handler = toNodeHandler(auth);
const server = createServer((req, res) => {
  if (req.url.startsWith('/api/auth')) return handler(req, res);
  // The login and consent "pages" are never reached by the benchmark (the
  // session exists and consent is remembered); the set-up drives the API.
  res.writeHead(404).end('not found');
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

// ---- scripted browser --------------------------------------------------
function cookieOf(res, jar) {
  for (const sc of res.headers.getSetCookie()) {
    const nv = sc.split(';')[0];
    const i = nv.indexOf('=');
    const v = nv.slice(i + 1);
    if (v) jar.set(nv.slice(0, i), v);
    else jar.delete(nv.slice(0, i));
  }
}
const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

async function setup() {
  const jar = new Map();
  const json = { 'content-type': 'application/json', origin: ORIGIN };
  let r = await fetch(`${BASE_URL}/sign-up/email`, {
    method: 'POST', headers: json, body: JSON.stringify({ email: EMAIL, password: PASSWORD, name: 'Bench User' }),
  });
  if (!r.ok) throw new Error(`sign-up: ${r.status} ${await r.text()}`);
  r = await fetch(`${BASE_URL}/sign-in/email`, {
    method: 'POST', headers: json, body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
  });
  if (!r.ok) throw new Error(`sign-in: ${r.status} ${await r.text()}`);
  cookieOf(r, jar);
  await r.text();

  const client = await auth.api.adminCreateOAuthClient({
    body: {
      client_name: 'bench',
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      // Loopback http redirect URIs are only accepted for native clients.
      application_type: 'native',
      scope: 'openid profile email offline_access',
    },
    // Server-side call on behalf of the signed-in user (the client's owner).
    headers: new Headers({ cookie: cookieHeader(jar) }),
  });

  // One authorize → consent page → accept: consent is remembered.
  const u = new URL(`${BASE_URL}/oauth2/authorize`);
  const q = {
    response_type: 'code', client_id: client.client_id, redirect_uri: REDIRECT_URI, scope: SCOPE,
    state: 'setup-state', nonce: 'setup', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  r = await fetch(u, { redirect: 'manual', headers: { cookie: cookieHeader(jar) } });
  cookieOf(r, jar);
  const text = await r.text();
  // Node's fetch sends `sec-fetch-mode: cors`, so Better Auth answers with
  // JSON {redirect, url} instead of a 302 (a browser navigation gets the 302).
  let loc = r.headers.get('location');
  if (!loc && r.status === 200) loc = JSON.parse(text).url;
  const consentUrl = new URL(loc || '', ORIGIN);
  if (consentUrl.pathname !== '/consent') {
    throw new Error(`authorize: expected a redirect to the consent page, got ${r.status} ${loc} ${text}`);
  }
  r = await fetch(`${BASE_URL}/oauth2/consent`, {
    method: 'POST',
    headers: { ...json, cookie: cookieHeader(jar) },
    body: JSON.stringify({ accept: true, oauth_query: consentUrl.search.slice(1) }),
  });
  const body = await r.text();
  if (!r.ok || !body.includes('code=')) throw new Error(`consent: ${r.status} ${body}`);
  cookieOf(r, jar);
  // The JWT plugin creates its signing key on first use: make it now, not
  // inside the first measured JWKS requests.
  r = await fetch(`${BASE_URL}/jwks`);
  if (!r.ok) throw new Error(`jwks: ${r.status}`);
  await r.text();

  return {
    name: 'better-auth',
    issuer: BASE_URL,
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    cookie: cookieHeader(jar),
    authorize_extra: {},
    notes: `better-auth ${version('better-auth')} + @better-auth/oauth-provider ${version('@better-auth/oauth-provider')} on Node ${process.version}, NODE_ENV=${process.env.NODE_ENV || ''}; SQLite via better-sqlite3 ${version('better-sqlite3')} (WAL); JWT plugin with RS256 keys; opaque access tokens; rate limits off; native client (loopback http redirect)`,
    pid: process.pid,
  };
}

server.listen(PORT, HOST, async () => {
  try {
    const target = await setup();
    process.stdout.write(`PEER_READY ${JSON.stringify(target)}\n`);
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
