#!/usr/bin/env node
// Self-test of the harness against a running network (start-network.mjs):
//   1. loopback public client: PAR -> pds-login.mjs -> code -> token (PKCE + DPoP) -> getSession
//   2. loopback public client: PAR -> pds-login.mjs --deny -> error=access_denied
//   3. (if CONFIDENTIAL_HOST and CONFIDENTIAL_PORT are set, and the network was started with
//      CLIENT_HOST_MAP=<CONFIDENTIAL_HOST>=127.0.0.1:<CONFIDENTIAL_PORT>) a confidential
//      private_key_jwt client whose metadata is served from http://127.0.0.1:<port>:
//      PAR -> pds-login.mjs -> token -> getSession
// Env: PDS_URL (default http://localhost:2583), PDS_HANDLE, PDS_PASSWORD.
// Last line: `selftest: N passed, M failed`; exit code 1 if anything failed.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import http from 'node:http'
import { promisify } from 'node:util'
import { b64u, dpopClient, par, pkce, signJwtES256 } from './oauth-client.mjs'

const PDS = process.env.PDS_URL || 'http://localhost:2583'
const HANDLE = process.env.PDS_HANDLE || 'alice.test'
const here = new URL('.', import.meta.url).pathname
const execFileP = promisify(execFile)

async function pdsLogin(authUrl, ...flags) {
  const t0 = Date.now()
  const { stdout } = await execFileP(process.execPath, [`${here}pds-login.mjs`, ...flags, authUrl], { env: process.env, timeout: 60_000 })
  const lines = stdout.trim().split('\n')
  if (lines.length !== 1 || !lines[0].startsWith('REDIRECT ')) throw new Error(`pds-login printed: ${stdout}`)
  return { url: new URL(lines[0].slice('REDIRECT '.length)), ms: Date.now() - t0 }
}

const check = (cond, msg) => { if (!cond) throw new Error(msg) }

const tests = {
  async 'public loopback client: login, token, getSession'() {
    const redirectUri = 'http://127.0.0.1:18081/atproto/callback'
    const p = await par({ pdsUrl: PDS, redirectUri, scope: 'atproto transition:generic', loginHint: HANDLE })
    console.log('  authorize URL:', p.authorizeUrl)
    const { url, ms } = await pdsLogin(p.authorizeUrl)
    console.log(`  REDIRECT (${ms} ms):`, url.href)
    check(url.origin + url.pathname === redirectUri, 'redirect target is not the redirect_uri')
    check(url.searchParams.get('state') === p.state, 'state mismatch')
    check(url.searchParams.get('iss') === p.as.issuer, 'iss mismatch')
    const code = url.searchParams.get('code')
    check(code, 'no code')
    let r = await p.client.dpopFetch(p.as.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: p.verifier, client_id: p.clientId }) })
    const tok = await r.json()
    check(r.status === 200, `token: HTTP ${r.status} ${JSON.stringify(tok)}`)
    console.log('  token:', { sub: tok.sub, scope: tok.scope, token_type: tok.token_type, expires_in: tok.expires_in })
    r = await p.client.dpopFetch(`${PDS}/xrpc/com.atproto.server.getSession`, {}, tok.access_token)
    const sess = await r.json()
    check(r.status === 200 && sess.did === tok.sub && sess.handle === HANDLE, `getSession: HTTP ${r.status} ${JSON.stringify(sess)}`)
    console.log('  getSession:', { did: sess.did, handle: sess.handle })
  },

  async 'public loopback client: --deny gives error=access_denied'() {
    const redirectUri = 'http://127.0.0.1:18081/atproto/callback'
    const p = await par({ pdsUrl: PDS, redirectUri, scope: 'atproto' })
    const { url, ms } = await pdsLogin(p.authorizeUrl, '--deny')
    console.log(`  REDIRECT (${ms} ms):`, url.href)
    check(url.origin + url.pathname === redirectUri, 'redirect target is not the redirect_uri')
    check(url.searchParams.get('error') === 'access_denied', 'no error=access_denied')
    check(url.searchParams.get('state') === p.state, 'state mismatch')
    check(!url.searchParams.has('code'), 'code present on deny')
  },

  async 'confidential private_key_jwt client via CLIENT_HOST_MAP'() {
    const host = process.env.CONFIDENTIAL_HOST, port = Number(process.env.CONFIDENTIAL_PORT)
    if (!host || !port) return 'skip'
    const origin = `https://${host}`
    const clientId = `${origin}/client-metadata.json`, redirectUri = `${origin}/atproto/callback`, scope = 'atproto'
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const pub = publicKey.export({ format: 'jwk' })
    const jwk = { kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y, kid: 'k1', alg: 'ES256', use: 'sig' }
    const metadata = { client_id: clientId, client_name: 'atsso e2e selftest', application_type: 'web', grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], redirect_uris: [redirectUri], scope, dpop_bound_access_tokens: true,
      token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256', jwks_uri: `${origin}/jwks.json` }
    const served = []
    const srv = http.createServer((req, res) => {
      served.push(req.url)
      const body = req.url === '/client-metadata.json' ? metadata : req.url === '/jwks.json' ? { keys: [jwk] } : null
      res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' }); res.end(JSON.stringify(body ?? {}))
    })
    await new Promise((ok, ko) => srv.once('error', ko).listen(port, '127.0.0.1', ok))
    try {
      const as = await (await fetch(`${PDS}/.well-known/oauth-authorization-server`)).json()
      const assertion = () => signJwtES256({ alg: 'ES256', kid: 'k1', typ: 'JWT' },
        { iss: clientId, sub: clientId, aud: as.issuer, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60 }, privateKey)
      const form = (o) => new URLSearchParams({ ...o, client_id: clientId, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion() })
      const client = dpopClient()
      // body as a function: a fresh client assertion (jti) for the use_dpop_nonce retry
      const post = (url, o) => client.dpopFetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: () => form(o) })
      const { verifier, challenge } = pkce()
      const state = b64u(crypto.randomBytes(16))
      let r = await post(as.pushed_authorization_request_endpoint, { response_type: 'code', redirect_uri: redirectUri, scope, state, code_challenge: challenge, code_challenge_method: 'S256', login_hint: HANDLE })
      const parRes = await r.json()
      check(r.status === 201, `PAR: HTTP ${r.status} ${JSON.stringify(parRes)}`)
      const authUrl = `${as.authorization_endpoint}?client_id=${encodeURIComponent(clientId)}&request_uri=${encodeURIComponent(parRes.request_uri)}`
      const { url, ms } = await pdsLogin(authUrl)
      console.log(`  REDIRECT (${ms} ms):`, url.href)
      check(url.origin + url.pathname === redirectUri && url.searchParams.get('state') === state, 'bad redirect')
      r = await post(as.token_endpoint, { grant_type: 'authorization_code', code: url.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier })
      const tok = await r.json()
      check(r.status === 200, `token: HTTP ${r.status} ${JSON.stringify(tok)}`)
      r = await client.dpopFetch(`${PDS}/xrpc/com.atproto.server.getSession`, {}, tok.access_token)
      const sess = await r.json()
      check(r.status === 200 && sess.handle === HANDLE, `getSession: HTTP ${r.status} ${JSON.stringify(sess)}`)
      console.log('  metadata server saw:', served, '; token sub', tok.sub)
    } finally {
      srv.close()
    }
  },
}

let passed = 0, failed = 0, skipped = 0
for (const [name, fn] of Object.entries(tests)) {
  const t0 = Date.now()
  try {
    const res = await fn()
    if (res === 'skip') { skipped++; console.log(`SKIP ${name}`); continue }
    passed++; console.log(`PASS ${name} (${Date.now() - t0} ms)`)
  } catch (err) {
    failed++; console.log(`FAIL ${name}: ${err?.stack || err}`)
  }
}
console.log(`selftest: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
process.exit(failed ? 1 : 0)
