#!/usr/bin/env node
// Push an authorization request (PAR + PKCE + DPoP) for the loopback development client and print
// the authorization URL to hand to pds-login.mjs.
// Usage: PDS_URL=http://localhost:2583 node par-probe.mjs [redirect_uri] [scope]
//   defaults: redirect_uri http://127.0.0.1:8080/atproto/callback, scope "atproto"
// stdout: `AUTHORIZE_URL <url>` then `PAR {json}` (state, code_verifier, client_id, ...).
import { par } from './oauth-client.mjs'

const pdsUrl = process.env.PDS_URL || 'http://localhost:2583'
const redirectUri = process.argv[2] || 'http://127.0.0.1:8080/atproto/callback'
const scope = process.argv[3] || 'atproto'
try {
  const p = await par({ pdsUrl, redirectUri, scope, loginHint: process.env.LOGIN_HINT })
  console.log('AUTHORIZE_URL ' + p.authorizeUrl)
  console.log('PAR ' + JSON.stringify({ clientId: p.clientId, redirectUri, scope, state: p.state, codeVerifier: p.verifier, requestUri: p.requestUri, issuer: p.as.issuer }))
} catch (err) {
  console.error('par-probe: ' + (err?.message || err))
  process.exit(1)
}
