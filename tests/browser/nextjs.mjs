// The two Next.js example apps in headless Chromium (Debian /usr/bin/chromium + playwright-core
// from e2e/node_modules), beside atsso and a real PDS. Driven by tests/e2e_nextjs.rs, which starts
// everything and passes:
//   APP_A           examples/nextjs-sso (public client, PKCE by hand), e.g. http://127.0.0.1:40100
//   APP_B           examples/nextjs-authjs (Auth.js v5, confidential client), on `localhost`
//   APP_B_SERVER    the same app at 127.0.0.1 (where atsso delivers its logout tokens)
//   ATSSO_BASE      atsso (also its issuer)
//   PDS_URL         the PDS (its sign-in page runs in this browser)
//   HANDLE, PASSWORD, DID                       the PDS account
//   APP_B_CLIENT_ID, APP_B_CLIENT_SECRET, APP_B_AUTH_SECRET   to read app B's session cookie
//   SHOT_DIR        where nextjs-*.png screenshots go
// Protocol on stdio: prints `SID <sid>` once both apps are signed in, then reads one JSON line of
// logout tokens atsso signed for the test ({"replayable", "foreign"}); prints `DONE {json}` last.
import { createRequire } from 'node:module'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const fromE2e = createRequire(path.join(here, '../../e2e/package.json'))
const fromAuthjs = createRequire(path.join(here, '../../examples/nextjs-authjs/package.json'))
const { chromium } = fromE2e('playwright-core')
const jose = fromAuthjs('jose')
const { decode: decodeAuthjsCookie } = fromAuthjs('next-auth/jwt')

const env = (name) => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is required`)
  return value
}
const [A, B, ATSSO, PDS] = ['APP_A', 'APP_B', 'ATSSO_BASE', 'PDS_URL'].map(env)
const [HANDLE, PASSWORD, DID, SHOTS] = ['HANDLE', 'PASSWORD', 'DID', 'SHOT_DIR'].map(env)

const log = (...a) => console.error('[nextjs.mjs]', ...a)
const check = (ok, message) => { if (!ok) throw new Error(`check failed: ${message}`) }
const shot = async (page, name) => {
  await page.screenshot({ path: path.join(SHOTS, `nextjs-${name}.png`), fullPage: true })
  log('screenshot', name)
}
const text = async (page, testId) => (await page.getByTestId(testId).innerText()).trim()
// Polls `probe` (which returns a value or undefined) until it answers or `ms` pass.
async function eventually(ms, what, probe) {
  const until = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

const stdinReader = readline.createInterface({ input: process.stdin })
const stdinLines = stdinReader[Symbol.asyncIterator]()
const ask = async (line) => {
  console.log(line)
  const { value, done } = await stdinLines.next()
  if (done) throw new Error('the test driver closed stdin')
  return JSON.parse(value)
}

// The back-channel receiver, called the way atsso calls it (a form POST from a server).
async function postLogoutToken(app, token) {
  if (app === B) app = env('APP_B_SERVER')
  const res = await fetch(`${app}/api/auth/backchannel-logout`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }),
  })
  return { status: res.status, body: await res.text() }
}

// Signs a logout token that looks right in every claim and header, with a key that is not atsso's.
async function forgedLogoutToken(audience, sid) {
  const jwks = await (await fetch(`${ATSSO}/api/auth/jwks`)).json()
  const kid = jwks.keys.find((k) => k.alg === 'RS256' || k.kty === 'RSA')?.kid
  const { privateKey } = await jose.generateKeyPair('RS256')
  return new jose.SignJWT({ sid, sub: DID, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
    .setProtectedHeader({ alg: 'RS256', typ: 'logout+jwt', kid })
    .setIssuer(ATSSO)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('2m')
    .setJti(crypto.randomUUID())
    .sign(privateKey)
}

// The PDS's own sign-in and consent pages (@atproto/oauth-provider's UI), in this browser.
async function signInAtPds(page) {
  await page.waitForURL((url) => url.href.startsWith(PDS), { timeout: 30_000 })
  const password = page.locator('input[type=password]')
  await password.first().waitFor({ timeout: 30_000 })
  const username = page.locator('input[name=username], input[autocomplete=username]')
  if ((await username.count()) && !(await username.first().inputValue())) await username.first().fill(HANDLE)
  await password.first().fill(PASSWORD)
  await page.getByRole('button', { name: /sign in|next|log in/i }).first().click()
  await page.getByRole('button', { name: /authorize|accept|allow/i }).first().click({ timeout: 30_000 })
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
})
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } })
  const page = await context.newPage()
  const pdsRequests = []
  page.on('request', (request) => { if (request.url().startsWith(PDS)) pdsRequests.push(request.url()) })

  // 1. App A, signed out: the silent SSO check (prompt=none) comes back with login_required.
  await page.goto(`${A}/`)
  await page.getByTestId('sign-in').waitFor()
  check((await text(page, 'status')) === 'Signed out.', 'app A starts signed out')
  check(pdsRequests.length === 0, 'the silent check does not reach the PDS')

  // 2. Sign in at app A: atsso asks for the handle, the PDS for the password and consent.
  await page.getByTestId('sign-in').click()
  await page.waitForURL(`${ATSSO}/login?**`)
  await page.locator('#handle').fill(HANDLE)
  await page.getByRole('button', { name: 'Continue' }).click()
  await signInAtPds(page)
  await page.waitForURL(`${A}/dashboard`, { timeout: 30_000 })
  check((await text(page, 'did')) === DID, 'app A shows the DID')
  check((await text(page, 'handle')) === HANDLE, 'app A shows the handle')
  await shot(page, 'sso-dashboard')
  log('app A signed in through the PDS')

  // 2b. App A acts in the Atmosphere through atsso: "Write a note" creates a record in the user's
  //     repository (atsso's XRPC proxy calls the PDS); the PDS itself then serves it.
  await page.getByTestId('note-text').fill('Hello from the browser test')
  await page.getByTestId('write-note').click()
  const noteResult = await text(page, 'note-result')
  const noteUri = /^created (at:\/\/\S+)$/.exec(noteResult)?.[1]
  check(noteUri?.startsWith(`at://${DID}/com.example.note/`), `the note was written through atsso: ${noteResult}`)
  const rkey = noteUri.split('/').pop()
  const stored = await (await fetch(`${PDS}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(DID)}&collection=com.example.note&rkey=${rkey}`)).json()
  check(stored?.value?.text === 'Hello from the browser test', `the PDS serves the note: ${JSON.stringify(stored)}`)
  await shot(page, 'sso-note')
  log(`app A wrote ${noteUri} through atsso`)

  // 3. App B signs in by SSO: atsso's session answers, the PDS is not visited.
  pdsRequests.length = 0
  await page.goto(`${B}/`)
  check((await text(page, 'status')) === 'Signed out.', 'app B starts signed out')
  await page.getByTestId('sign-in').click()
  await page.waitForURL(`${B}/dashboard`, { timeout: 30_000 })
  check((await text(page, 'did')) === DID, 'app B shows the DID')
  check((await text(page, 'handle')) === HANDLE, 'app B shows the handle')
  check(pdsRequests.length === 0, `app B signed in without the PDS (saw ${pdsRequests.join(', ')})`)
  await shot(page, 'authjs-dashboard')
  log('app B signed in by SSO')

  // 4. Refresh routes rotate the tokens (a new access token, the app stays signed in).
  for (const app of [A, B]) {
    await page.goto(`${app}/dashboard`)
    const before = await text(page, 'access-token-id')
    check(before !== 'none', `${app} holds an access token`)
    await page.getByTestId('refresh').click()
    await page.waitForURL(`${app}/dashboard`)
    const after = await eventually(10_000, `a new access token at ${app}`, async () => {
      const id = await text(page, 'access-token-id')
      return id !== before ? id : undefined
    })
    check(after !== 'none', `${app} still holds an access token after the refresh`)
    log(`${app}: access token ${before} -> ${after}`)
  }

  // 5. Logout tokens that must be refused (400) and sign nobody out.
  const cookiesA = await context.cookies(A)
  const idTokenA = cookiesA.find((c) => c.name === 'id_token').value
  const sid = jose.decodeJwt(idTokenA).sid
  check(typeof sid === 'string', 'the ID token names the atsso session')
  const minted = await ask(`SID ${sid}`)
  const clientB = env('APP_B_CLIENT_ID')
  const forged = await forgedLogoutToken(clientB, sid)
  const refusals = {
    forged: await postLogoutToken(B, forged),
    forgedAtA: await postLogoutToken(A, await forgedLogoutToken(jose.decodeJwt(idTokenA).aud, sid)),
    foreign: await postLogoutToken(B, minted.foreign),
    garbage: await postLogoutToken(B, 'not-a-jwt'),
  }
  const first = await postLogoutToken(B, minted.replayable)
  check(first.status === 200, `a genuine logout token (another session) is accepted: ${first.status} ${first.body}`)
  refusals.replayed = await postLogoutToken(B, minted.replayable)
  for (const [name, { status, body }] of Object.entries(refusals)) {
    check(status === 400, `the ${name} logout token is refused with 400, got ${status} ${body}`)
    log(`${name} logout token: 400 ${body}`)
  }
  for (const app of [A, B]) {
    await page.goto(`${app}/dashboard`)
    check((await text(page, 'did')) === DID, `${app} is still signed in after the refused logout tokens`)
  }

  // 6. Keep what each app holds now, to show afterwards that atsso refuses it.
  const oldCookiesA = await context.cookies(A)
  const oldCookiesB = await context.cookies(B)

  // 7. Sign out everywhere from app A.
  await page.goto(`${A}/dashboard`)
  await page.getByTestId('sign-out').click()
  await page.waitForURL(`${A}/`, { timeout: 30_000 })
  check((await text(page, 'status')) === 'Signed out.', 'app A is signed out')

  // 8. App B's next page load is signed out: its receiver heard from atsso (back-channel). App B
  //    itself never asks atsso on a page load (its session is a cookie), so nothing else could.
  let pageLoads = 0
  await eventually(20_000, 'app B signed out by the back-channel logout', async () => {
    await page.goto(`${B}/dashboard`)
    pageLoads += 1
    return page.url() === `${B}/` && (await text(page, 'status')) === 'Signed out.' ? true : undefined
  })
  log(`app B signed out after ${pageLoads} page load(s)`)

  // 9. Their refresh tokens are refused. App A through its own refresh route with its old cookies;
  //    app B's refresh token read from its old (encrypted) session cookie, presented to atsso.
  const replay = await browser.newContext()
  await replay.addCookies(oldCookiesA)
  const replayPage = await replay.newPage()
  await replayPage.goto(`${A}/api/auth/refresh?next=/dashboard`)
  check(replayPage.url() === `${A}/`, `app A's refresh after the logout lands signed out, at ${replayPage.url()}`)
  check((await text(replayPage, 'status')) === 'Signed out.', "app A's refresh is refused")
  await replay.close()
  const chunks = oldCookiesB.filter((c) => c.name.startsWith('authjs.session-token'))
  chunks.sort((x, y) => x.name.localeCompare(y.name, 'en', { numeric: true }))
  const sessionB = await decodeAuthjsCookie({
    token: chunks.map((c) => c.value).join(''),
    secret: env('APP_B_AUTH_SECRET'),
    salt: 'authjs.session-token',
  })
  check(typeof sessionB?.refresh_token === 'string', "app B's session held a refresh token")
  const refreshB = await fetch(`${ATSSO}/api/auth/oauth2/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientB)}:${encodeURIComponent(env('APP_B_CLIENT_SECRET'))}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: sessionB.refresh_token }),
  })
  const refreshBBody = await refreshB.json()
  check(refreshB.status === 400 && refreshBBody.error === 'invalid_grant', `app B's refresh is refused: ${refreshB.status} ${JSON.stringify(refreshBBody)}`)

  // 10. Signing in again at app A asks for the handle: no automatic sign-in after a logout.
  await page.goto(`${A}/`)
  check((await text(page, 'status')) === 'Signed out.', 'app A stays signed out')
  await page.getByTestId('sign-in').click()
  await page.waitForURL(`${ATSSO}/login?**`)
  await page.locator('#handle').waitFor()
  await shot(page, 'sign-in-again')

  console.log(`DONE ${JSON.stringify({ sid, refusals: Object.fromEntries(Object.entries(refusals).map(([k, v]) => [k, v.status])), appBRefresh: refreshB.status })}`)
} finally {
  await browser.close()
  stdinReader.close()
  process.stdin.destroy()
}
