#!/usr/bin/env node
// Sign in and consent (or deny) at the local PDS's OAuth authorization page WITHOUT a browser.
//
// Usage:
//   node pds-login.mjs [--deny] '<authorization URL at the PDS>'
//     e.g. 'http://localhost:2583/oauth/authorize?client_id=...&request_uri=urn:ietf:params:oauth:request_uri:...'
// Environment: PDS_HANDLE (default alice.test), PDS_PASSWORD (default alice-pass),
//   PDS_CONSENT_SCOPE (optional: scope to grant, must be a subset of the requested one and
//   contain "atproto"; default: grant what was requested), PDS_LOGIN_TIMEOUT_MS (default 30000),
//   PDS_LOGIN_VERBOSE=1 (trace each step on stderr).
//
// Output: exactly one stdout line `REDIRECT <url>`: the PDS's redirect to the client's
// redirect_uri (carrying code/state/iss, or error=access_denied/state/iss with --deny).
// That redirect is NOT followed. Exit code 0 on success; 1 with `pds-login: <message>` on stderr.
//
// It drives the same JSON endpoints as the provider's own UI (@atproto/oauth-provider 0.22.x):
//   GET  /oauth/authorize?...                  (top-level navigation: sets device + csrf cookies)
//   POST /@atproto/oauth-provider/~api/sign-in  {locale, username, password, remember}
//   POST /@atproto/oauth-provider/~api/consent  {did[, scope]}   -> {url}
//     or /@atproto/oauth-provider/~api/reject   {}               -> {url}   (--deny)
//   GET  {url} = /oauth/authorize/redirect?...  -> 303 Location: <redirect_uri>?code=..&state=..&iss=..
// The provider checks sec-fetch-site/-mode/-dest, origin, referer and x-csrf-token; Node's fetch
// rewrites sec-fetch-* headers, hence raw node:http. These are internal endpoints: the versions
// are pinned by e2e/package-lock.json.
import http from 'node:http'
import https from 'node:https'

const API_PREFIX = '/@atproto/oauth-provider/~api'
const verbose = process.env.PDS_LOGIN_VERBOSE === '1'
const trace = (...a) => { if (verbose) console.error('[pds-login]', ...a) }

class LoginError extends Error {}
const fail = (msg) => { throw new LoginError(msg) }

function parseArgs(argv) {
  let deny = false
  const rest = []
  for (const a of argv) {
    if (a === '--deny') deny = true
    else if (a === '-h' || a === '--help') {
      console.error('usage: pds-login.mjs [--deny] <authorization-url>')
      process.exit(2)
    } else rest.push(a)
  }
  if (rest.length !== 1) {
    console.error('usage: pds-login.mjs [--deny] <authorization-url>')
    process.exit(2)
  }
  return { deny, authUrl: rest[0] }
}

// Raw HTTP request: no redirect following, headers sent verbatim.
function raw(url, { method = 'GET', headers = {}, body } = {}) {
  const u = new URL(url)
  const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null
  if (!mod) return Promise.reject(new LoginError(`unsupported URL scheme: ${u.protocol}`))
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, headers: { 'user-agent': 'atsso-e2e-pds-login', ...headers, ...(body != null ? { 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      let data = ''
      res.setEncoding('utf8')
      res.on('data', (c) => (data += c))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: data }))
      res.on('error', reject)
    })
    req.on('error', (err) => reject(new LoginError(`${method} ${u.origin}${u.pathname}: ${err.message}`)))
    if (body != null) req.write(body)
    req.end()
  })
}

const parseJson = (r, what) => {
  try { return JSON.parse(r.text) } catch { fail(`${what}: HTTP ${r.status}, not JSON: ${r.text.slice(0, 300)}`) }
}

// Short readable summary of an HTML error page from the provider.
const htmlSummary = (text) => {
  // The provider's error page embeds window["__errorData"]=JSON.parse("<json string>")
  const e = /window\["__errorData"\]=JSON\.parse\(("(?:[^"\\]|\\.)*")\)/.exec(text)
  if (e) {
    try {
      const d = JSON.parse(JSON.parse(e[1]))
      return `${d.error || 'error'}: ${d.error_description || ''}`.trim()
    } catch {}
  }
  const m = /<title>([^<]*)<\/title>/i.exec(text)
  const flat = text.replace(/<script[\s\S]*?<\/script>/gi, ' ').replace(/<style[\s\S]*?<\/style>/gi, ' ').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim()
  return `${m ? m[1].trim() + ': ' : ''}${flat.slice(0, 300)}`
}

async function login({ authUrl, deny, username, password, consentScope }) {
  let auth
  try { auth = new URL(authUrl) } catch { fail(`not a URL: ${authUrl}`) }
  if (auth.pathname !== '/oauth/authorize') fail(`expected a <PDS>/oauth/authorize?... URL, got path ${auth.pathname}`)
  if (!auth.searchParams.get('request_uri')) fail('the authorization URL has no request_uri parameter (the PDS requires PAR)')
  const origin = auth.origin

  const jar = new Map()
  const eatCookies = (res) => {
    for (const c of res.headers['set-cookie'] || []) {
      const kv = c.split(';')[0]
      const i = kv.indexOf('=')
      if (i > 0) jar.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim())
    }
  }
  const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')

  // A 3xx whose Location leaves the PDS is the redirect to the client: that is our result.
  const clientRedirect = (res) => {
    if (res.status < 300 || res.status >= 400 || !res.headers.location) return null
    const loc = new URL(res.headers.location, origin)
    return loc.origin === origin ? null : loc.href
  }

  // 1. The authorization page, as a top-level cross-site navigation from the client.
  let r = await raw(auth.href, {
    headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' },
  })
  eatCookies(r)
  trace('GET /oauth/authorize ->', r.status, 'cookies', [...jar.keys()])
  {
    const out = clientRedirect(r)
    if (out) return out // e.g. prompt=none, or the provider bounced the request back with an error
  }
  if (r.status !== 200) fail(`GET /oauth/authorize: HTTP ${r.status}: ${htmlSummary(r.text)}`)
  if (!jar.get('csrf-token')) fail(`GET /oauth/authorize set no csrf-token cookie (got: ${[...jar.keys()].join(', ') || 'none'})`)

  const api = async (endpoint, payload, extraHeaders = {}) => {
    const res = await raw(`${origin}${API_PREFIX}/${endpoint}`, {
      method: 'POST',
      body: JSON.stringify(payload),
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        'sec-fetch-site': 'same-origin',
        'sec-fetch-mode': 'same-origin',
        'sec-fetch-dest': 'empty',
        origin,
        referer: auth.href,
        'x-csrf-token': jar.get('csrf-token'),
        cookie: cookieHeader(),
        ...extraHeaders,
      },
    })
    eatCookies(res)
    const json = parseJson(res, endpoint)
    trace(`POST ~api/${endpoint} ->`, res.status, JSON.stringify(json).slice(0, 200))
    return { res, json }
  }

  // 2. Sign in.
  const { res: sres, json: signIn } = await api('sign-in', { locale: 'en', username, password, remember: true })
  if (sres.status !== 200 || !signIn.account) {
    fail(`sign-in as ${username} failed: HTTP ${sres.status}: ${signIn.error || ''} ${signIn.error_description || JSON.stringify(signIn).slice(0, 300)}`.trim())
  }
  const did = signIn.account.sub || signIn.account.did
  if (!did) fail(`sign-in response has no account DID: ${JSON.stringify(signIn).slice(0, 300)}`)

  // 3. Consent (or reject).
  const { res: cres, json: decision } = deny
    ? await api('reject', {})
    : await api('consent', { did, ...(consentScope ? { scope: consentScope } : {}) },
      signIn.ephemeralToken ? { authorization: `Bearer ${signIn.ephemeralToken}` } : {})
  if (!decision.url) fail(`${deny ? 'reject' : 'consent'} failed: HTTP ${cres.status}: ${JSON.stringify(decision).slice(0, 300)}`)

  // 4. The provider's redirect helper (a navigation from the authorization page) answers 303 to
  //    the client's redirect_uri. Do not follow it.
  const helper = new URL(decision.url, origin)
  if (helper.origin !== origin) return helper.href // defensive: already the client URL
  r = await raw(helper.href, {
    headers: { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', referer: auth.href, cookie: cookieHeader(), accept: 'text/html' },
  })
  trace('GET /oauth/authorize/redirect ->', r.status, r.headers.location || '')
  const out = clientRedirect(r)
  if (out) return out
  if (r.status === 200 && /<form/i.test(r.text)) {
    fail('the PDS answered with a form_post redirect page; only response_mode=query/fragment are supported by pds-login')
  }
  fail(`GET /oauth/authorize/redirect: expected a 303 to the client, got HTTP ${r.status} ${r.headers.location || ''}: ${htmlSummary(r.text)}`)
}

const { deny, authUrl } = parseArgs(process.argv.slice(2))
const timeoutMs = Number(process.env.PDS_LOGIN_TIMEOUT_MS || 30000)
const timer = setTimeout(() => { console.error(`pds-login: timed out after ${timeoutMs} ms`); process.exit(1) }, timeoutMs)
try {
  const url = await login({
    authUrl,
    deny,
    username: process.env.PDS_HANDLE || 'alice.test',
    password: process.env.PDS_PASSWORD || 'alice-pass',
    consentScope: process.env.PDS_CONSENT_SCOPE || undefined,
  })
  clearTimeout(timer)
  process.stdout.write(`REDIRECT ${url}\n`)
  process.exit(0)
} catch (err) {
  clearTimeout(timer)
  console.error(`pds-login: ${err instanceof LoginError ? err.message : err?.stack || err}`)
  process.exit(1)
}
