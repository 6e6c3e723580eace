// Minimal ATProto OAuth client pieces (PAR + PKCE + DPoP), node:crypto only, for the probe and
// the self-test. Not used by the PDS. Works on Node >= 20.
import crypto from 'node:crypto'

export const b64u = (b) => Buffer.from(b).toString('base64url')

export function pkce() {
  const verifier = b64u(crypto.randomBytes(32))
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest())
  return { verifier, challenge }
}

// ES256 JWT signed with a node:crypto KeyObject (JWS wants the raw r||s signature).
export function signJwtES256(header, payload, privateKey) {
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`
  const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' })
  return `${input}.${b64u(sig)}`
}

// A DPoP key + fetch wrapper that retries once on use_dpop_nonce and remembers nonces per origin.
// init.body may be a function, called per attempt (e.g. for a fresh client_assertion jti).
export function dpopClient() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' })
  const jwk = { kty, crv, x, y }
  const nonces = {}
  async function dpopFetch(url, init = {}, accessToken) {
    const u = new URL(url)
    for (let i = 0; ; i++) {
      const payload = { htm: init.method || 'GET', htu: u.origin + u.pathname, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000) }
      if (nonces[u.origin]) payload.nonce = nonces[u.origin]
      if (accessToken) payload.ath = b64u(crypto.createHash('sha256').update(accessToken).digest())
      const proof = signJwtES256({ alg: 'ES256', typ: 'dpop+jwt', jwk }, payload, privateKey)
      const headers = { ...(init.headers || {}), DPoP: proof }
      if (accessToken) headers.Authorization = `DPoP ${accessToken}`
      const body = typeof init.body === 'function' ? await init.body() : init.body
      const r = await fetch(url, { ...init, body, headers })
      const n = r.headers.get('dpop-nonce')
      if (n) nonces[u.origin] = n
      if (i === 0 && (r.status === 400 || r.status === 401)) {
        const t = await r.clone().text()
        if (t.includes('use_dpop_nonce') || (r.headers.get('www-authenticate') || '').includes('use_dpop_nonce')) continue
      }
      return r
    }
  }
  return { dpopFetch, jwk }
}

export const loopbackClientId = (redirectUri, scope) =>
  `http://localhost?redirect_uri=${encodeURIComponent(redirectUri)}&scope=${encodeURIComponent(scope)}`

// PAR for a public loopback client; returns everything needed to finish the flow.
export async function par({ pdsUrl, redirectUri, scope = 'atproto', loginHint, client = dpopClient() }) {
  const as = await (await fetch(`${pdsUrl}/.well-known/oauth-authorization-server`)).json()
  const clientId = loopbackClientId(redirectUri, scope)
  const { verifier, challenge } = pkce()
  const state = b64u(crypto.randomBytes(16))
  const body = new URLSearchParams({ client_id: clientId, response_type: 'code', redirect_uri: redirectUri, scope, state, code_challenge: challenge, code_challenge_method: 'S256' })
  if (loginHint) body.set('login_hint', loginHint)
  const r = await client.dpopFetch(as.pushed_authorization_request_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
  const text = await r.text()
  if (r.status !== 201) throw new Error(`PAR: HTTP ${r.status}: ${text}`)
  const { request_uri: requestUri } = JSON.parse(text)
  const authorizeUrl = `${as.authorization_endpoint}?client_id=${encodeURIComponent(clientId)}&request_uri=${encodeURIComponent(requestUri)}`
  return { as, clientId, redirectUri, scope, state, verifier, requestUri, authorizeUrl, client }
}
