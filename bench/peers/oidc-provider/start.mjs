// panva/oidc-provider, set up as a user would to compare with atsso:
// production mode, a confidential client (client_secret_basic, PKCE),
// RS256, rotating refresh tokens, introspection on, a tiny account store
// with a scripted login + consent, and an in-memory adapter that does NOT
// evict (the library's bundled memory adapter is an LRU of ~1,000 entries).
//
// Usage: PORT=4001 SESSIONS=32 [ACCESS_TOKEN_FORMAT=jwt] node start.mjs
// ACCESS_TOKEN_FORMAT: `opaque` (default; the library's default) or `jwt`:
// RS256 JWT access tokens for a resource server (resource indicators with a
// default resource), so a token response carries two RSA signatures
// (id_token + access token) like atsso's RS256 access tokens. Such a token
// is audienced to the resource server: oidc-provider's userinfo refuses it
// and its introspection does not take structured tokens, so userinfo and
// introspection are benchmarked with the opaque configuration.
// Prints one line `PEER_READY {target json}` once SESSIONS browser sessions
// (one per benchmark worker) with a remembered grant exist (see
// bench/README.md for the target contract). One per worker because
// oidc-provider gives the session a new id at the end of every interaction
// (anti-fixation), and the consent interaction happens on every authorize
// that asks for offline_access: workers sharing one session would log each
// other out.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const PORT = Number(process.env.PORT || 4001);
const SESSIONS = Math.max(1, Number(process.env.SESSIONS || 32));
const HOST = '127.0.0.1';
const ISSUER = `http://${HOST}:${PORT}`;
const CLIENT_ID = 'bench-client';
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const ACCESS_TOKEN_FORMAT = process.env.ACCESS_TOKEN_FORMAT || 'opaque';
if (!['opaque', 'jwt'].includes(ACCESS_TOKEN_FORMAT)) {
  console.error(`ACCESS_TOKEN_FORMAT must be opaque or jwt, got ${ACCESS_TOKEN_FORMAT}`);
  process.exit(2);
}
const JWT = ACCESS_TOKEN_FORMAT === 'jwt';
// The resource server the JWT access tokens are for, and its one scope.
const RESOURCE = 'urn:atsso-bench:api';
const RESOURCE_SCOPE = 'api';
const SCOPE = JWT ? `openid profile offline_access ${RESOURCE_SCOPE}` : 'openid profile offline_access';
const VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/oidc-provider/package.json', import.meta.url)),
).version;

// ---- accounts: one user, password checked on the scripted login ----------
const USERS = new Map([
  ['bench-user', { password: randomBytes(12).toString('base64url'), name: 'Bench User', email: 'bench@example.test' }],
]);

async function findAccount(_ctx, id) {
  const u = USERS.get(id);
  if (!u) return undefined;
  return {
    accountId: id,
    async claims() {
      return { sub: id, name: u.name, email: u.email, email_verified: true };
    },
  };
}

// ---- adapter: plain Maps with expiry, O(1) grant index, no eviction ------
const stores = new Map(); // model -> Map(id -> { payload, exp })
const grantIndex = new Map(); // grantId -> Set("model:id")
const uidIndex = new Map(); // session uid -> id
const userCodeIndex = new Map();
const now = () => Date.now();

class MapAdapter {
  constructor(model) {
    this.model = model;
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }
  async upsert(id, payload, expiresIn) {
    const exp = typeof expiresIn === 'number' ? now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, exp });
    if (payload.grantId) {
      let s = grantIndex.get(payload.grantId);
      if (!s) grantIndex.set(payload.grantId, (s = new Set()));
      s.add(`${this.model}:${id}`);
    }
    if (this.model === 'Session' && payload.uid) uidIndex.set(payload.uid, id);
    if (payload.userCode) userCodeIndex.set(payload.userCode, id);
  }
  async find(id) {
    const e = this.store.get(id);
    if (!e) return undefined;
    if (e.exp <= now()) {
      this.store.delete(id);
      return undefined;
    }
    return e.payload;
  }
  async findByUid(uid) {
    const id = uidIndex.get(uid);
    return id ? this.find(id) : undefined;
  }
  async findByUserCode(userCode) {
    const id = userCodeIndex.get(userCode);
    return id ? this.find(id) : undefined;
  }
  async consume(id) {
    const e = this.store.get(id);
    if (e) e.payload.consumed = Math.floor(now() / 1000);
  }
  async destroy(id) {
    const e = this.store.get(id);
    this.store.delete(id);
    if (e?.payload?.grantId) grantIndex.get(e.payload.grantId)?.delete(`${this.model}:${id}`);
  }
  async revokeByGrantId(grantId) {
    const s = grantIndex.get(grantId);
    if (!s) return;
    for (const key of s) {
      const i = key.indexOf(':');
      stores.get(key.slice(0, i))?.delete(key.slice(i + 1));
    }
    grantIndex.delete(grantId);
  }
}

// Expired entries are swept every 10 s (so memory tracks live state only).
setInterval(() => {
  const t = now();
  for (const [model, m] of stores) {
    for (const [id, e] of m) {
      if (e.exp <= t) {
        m.delete(id);
        if (e.payload.grantId) grantIndex.get(e.payload.grantId)?.delete(`${model}:${id}`);
        if (model === 'Session' && e.payload.uid) uidIndex.delete(e.payload.uid);
      }
    }
  }
}, 10_000).unref();

// ---- provider ------------------------------------------------------------
const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
jwk.kid = 'bench-rs256';
jwk.use = 'sig';
jwk.alg = 'RS256';

const provider = new Provider(ISSUER, {
  adapter: MapAdapter,
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      introspection_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  findAccount,
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    // With ACCESS_TOKEN_FORMAT=jwt: every authorize defaults to RESOURCE,
    // the code and refresh grants keep using the granted resource, and the
    // resource server takes RS256 JWT access tokens.
    resourceIndicators: JWT
      ? {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo(_ctx, indicator) {
          if (indicator !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: RESOURCE_SCOPE,
            audience: RESOURCE,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      }
      : { enabled: false },
  },
  pkce: { required: () => true },
  // The library's defaults for these, set explicitly (silences its start-up
  // notices); the other TTLs keep their defaults (access token 1 h, code
  // 60 s, refresh token 14 days for the whole rotation chain).
  ttl: {
    Interaction: 3600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  // Refresh tokens rotate on every use (the default keeps them for
  // confidential clients).
  rotateRefreshToken: () => true,
  interactions: {
    url(_ctx, interaction) {
      return `/interaction/${interaction.uid}`;
    },
  },
});
provider.proxy = false;

// ---- interactions: scripted login, consent remembered in the Grant --------
function readBody(req) {
  return new Promise((resolve, reject) => {
    let b = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (b += c));
    req.on('end', () => resolve(new URLSearchParams(b)));
    req.on('error', reject);
  });
}

function eq(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

async function consentResult(details, { approve }) {
  const { prompt, params, session, grantId } = details;
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  // The resource server's scope is granted per resource (missingResourceScopes), not as an OIDC scope.
  const requested = String(params.scope || '').split(' ').filter((s) => s && !(JWT && s === RESOURCE_SCOPE));
  if (grant) {
    const granted = new Set(String(grant.getOIDCScope() || '').split(' '));
    const covered = requested.every((s) => granted.has(s));
    const claimsMissing = (prompt.details.missingOIDCClaims || []).length > 0;
    const resourceScopesMissing = Object.keys(prompt.details.missingResourceScopes || {}).length > 0;
    if (covered && !claimsMissing && !resourceScopesMissing) {
      // Remembered consent: nothing new is asked for.
      return { consent: { grantId } };
    }
  }
  if (!approve) return null; // needs the user: show the consent page
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  grant.addOIDCScope(requested.join(' '));
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  for (const c of prompt.details.missingOIDCClaims || []) grant.addOIDCClaims([c]);
  return { consent: { grantId: await grant.save() } };
}

async function interactions(req, res) {
  const m = req.url.match(/^\/interaction\/([\w-]+)(\/(login|confirm))?(\?.*)?$/);
  if (!m) return false;
  const action = m[3];
  const details = await provider.interactionDetails(req, res);
  const name = details.prompt.name;
  if (req.method === 'GET' && !action) {
    if (name === 'consent') {
      const result = await consentResult(details, { approve: false });
      if (result) {
        await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
        return true;
      }
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      name === 'login'
        ? `<form method=post action="/interaction/${details.uid}/login"><input name=username><input name=password type=password><button>Sign in</button></form>`
        : `<form method=post action="/interaction/${details.uid}/confirm"><p>Allow ${details.params.client_id}: ${details.params.scope}?</p><button>Allow</button></form>`,
    );
    return true;
  }
  if (req.method === 'POST' && action === 'login' && name === 'login') {
    const form = await readBody(req);
    const u = USERS.get(form.get('username'));
    if (!u || !eq(u.password, form.get('password'))) {
      res.writeHead(401).end('bad credentials');
      return true;
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.get('username') } }, { mergeWithLastSubmission: false });
    return true;
  }
  if (req.method === 'POST' && action === 'confirm' && name === 'consent') {
    await readBody(req);
    const result = await consentResult(details, { approve: true });
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    return true;
  }
  res.writeHead(400).end('unexpected interaction step');
  return true;
}

const callback = provider.callback();
const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interactions(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err?.message || err));
    });
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

// ---- scripted browser: log in once and consent once ----------------------
function setCookies(jar, res) {
  for (const sc of res.headers.getSetCookie()) {
    const [nv, ...attrs] = sc.split(';');
    const i = nv.indexOf('=');
    const name = nv.slice(0, i).trim();
    const value = nv.slice(i + 1).trim();
    const expired = attrs.some((a) => /max-age=0|1970/i.test(a));
    if (expired || !value) jar.delete(name);
    else jar.set(name, value);
  }
}
const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

async function browse(jar, url, init = {}) {
  const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers || {}), cookie: cookieHeader(jar) } });
  setCookies(jar, res);
  const loc = res.headers.get('location');
  return { res, loc: loc ? new URL(loc, url).href : null, body: await res.text() };
}

async function scriptedLogin() {
  const jar = new Map();
  const u = new URL(`${ISSUER}/auth`);
  const q = {
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: SCOPE,
    state: 'setup', nonce: 'setup', prompt: 'consent',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(q)) u.searchParams.set(k, v);
  let url = u.href;
  const user = 'bench-user';
  for (let step = 0; step < 12; step++) {
    let r = await browse(jar, url);
    if (r.res.status === 200 && r.body.includes('/login"')) {
      const action = new URL(r.body.match(/action="([^"]+)"/)[1], url).href;
      r = await browse(jar, action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ username: user, password: USERS.get(user).password }).toString(),
      });
    } else if (r.res.status === 200 && r.body.includes('/confirm"')) {
      const action = new URL(r.body.match(/action="([^"]+)"/)[1], url).href;
      r = await browse(jar, action, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    }
    if (!r.loc) throw new Error(`setup: unexpected ${r.res.status} at ${url}: ${r.body.slice(0, 300)}`);
    if (r.loc.startsWith(REDIRECT_URI)) {
      const cb = new URL(r.loc);
      if (!cb.searchParams.get('code')) throw new Error(`setup: no code: ${r.loc}`);
      // The browser session: only the session cookies (interaction cookies are per flow).
      return [...jar].filter(([k]) => k.startsWith('_session')).map(([k, v]) => `${k}=${v}`).join('; ');
    }
    url = r.loc;
  }
  throw new Error('setup: too many steps');
}

server.listen(PORT, HOST, async () => {
  try {
    const cookies = [];
    for (let i = 0; i < SESSIONS; i++) cookies.push(await scriptedLogin());
    const target = {
      name: JWT ? 'oidc-provider JWT(RS256)' : 'oidc-provider opaque',
      access_token_format: ACCESS_TOKEN_FORMAT,
      issuer: ISSUER,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      cookie: cookies[0],
      cookies,
      // oidc-provider drops offline_access unless prompt=consent is requested,
      // so every authorize that should yield a refresh token passes through
      // the consent interaction (auto-approved from the remembered grant).
      authorize_extra: { prompt: 'consent' },
      notes: `oidc-provider ${VERSION} on Node ${process.version}, NODE_ENV=${process.env.NODE_ENV || ''}; in-memory Map adapter without eviction; RS256; ${JWT ? `RS256 JWT access tokens for the resource server ${RESOURCE} (resourceIndicators: defaultResource, useGrantedResource, accessTokenFormat jwt)` : 'opaque access tokens'}; one browser session per worker (the session id changes after every interaction); rotateRefreshToken: () => true; offline_access needs prompt=consent, so authorize = /auth → /interaction/:uid (consent remembered in the Grant, auto-approved) → /auth/:uid → redirect_uri`,
      pid: process.pid,
    };
    process.stdout.write(`PEER_READY ${JSON.stringify(target)}\n`);
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
