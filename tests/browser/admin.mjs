// Browser test of the admin UI in headless Chromium (Debian /usr/bin/chromium + playwright-core
// from e2e/node_modules). Driven by tests/api/admin_browser.rs, which starts the server, signs the
// admin in through the test session seam and passes:
//   ATSSO_BASE            e.g. http://127.0.0.1:40123
//   ATSSO_SESSION_COOKIE  the admin's atsso_session cookie value
//   ATSSO_SHOT_DIR        where admin-*.png screenshots go
// Prints one JSON line {"client_id", "client_secret"} (the disabled client's rotated secret).
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(path.join(here, '../../e2e/package.json'))
const { chromium } = require('playwright-core')

const base = process.env.ATSSO_BASE
const cookie = process.env.ATSSO_SESSION_COOKIE
const shots = process.env.ATSSO_SHOT_DIR
if (!base || !cookie || !shots) throw new Error('ATSSO_BASE, ATSSO_SESSION_COOKIE and ATSSO_SHOT_DIR are required')

const log = (...a) => console.error('[admin.mjs]', ...a)
const check = (ok, message) => { if (!ok) throw new Error(`check failed: ${message}`) }
const shot = async (page, name) => {
  await page.screenshot({ path: path.join(shots, `admin-${name}.png`), fullPage: true })
  log('screenshot', name)
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
})
try {
  // Signed out: the sign-in page.
  const anonymous = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  const signedOut = await anonymous.newPage()
  await signedOut.goto(`${base}/admin`)
  await signedOut.getByRole('link', { name: 'Sign in' }).waitFor()
  await shot(signedOut, 'signin')
  await anonymous.close()

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base })
  await context.addCookies([{ name: 'atsso_session', value: cookie, url: base, httpOnly: true, sameSite: 'Lax' }])
  const page = await context.newPage()

  // The client list (empty), then a new client.
  await page.goto(`${base}/admin`)
  await page.getByRole('heading', { name: /Clients/ }).waitFor()
  await page.getByRole('link', { name: 'New client' }).click()
  await page.getByRole('heading', { name: 'New client' }).waitFor()
  await page.getByLabel('Name', { exact: true }).fill('Example Notes')
  await page.getByLabel('Redirect URIs', { exact: true }).fill('https://notes.example/callback')
  await page.getByLabel('Post-logout redirect URIs').fill('https://notes.example/')
  await page.locator('input[name=scope][value=email]').check()
  await shot(page, 'client-new')
  await page.getByRole('button', { name: 'Create client' }).click()

  // The secret, shown once, with a working copy button.
  await page.getByRole('heading', { name: 'Client created' }).waitFor()
  const clientId = await page.locator('#client_id').inputValue()
  const firstSecret = await page.locator('#client_secret').inputValue()
  check(firstSecret.length === 43, 'a 32-byte secret is shown')
  await page.locator('[data-copy=client_secret]').click()
  await page.locator('[data-copy=client_secret]', { hasText: 'Copied' }).waitFor()
  check((await page.evaluate(() => navigator.clipboard.readText())) === firstSecret, 'the copy button copies the secret')
  await shot(page, 'client-secret')
  await page.getByRole('link', { name: 'Done' }).click()

  // The client page never shows the secret again.
  await page.getByRole('heading', { name: /Example Notes/ }).waitFor()
  check(!(await page.content()).includes(firstSecret), 'the secret is not shown again')

  // Edit the redirect URIs: a bad one is refused with a message at the field, then a good edit.
  await page.getByLabel('Redirect URIs', { exact: true }).fill('http://notes.example/callback')
  await page.getByRole('button', { name: 'Save changes' }).click()
  await page.locator('#redirect_uris-error').waitFor()
  check((await page.locator('#redirect_uris-error').innerText()).includes('must use https'), 'the field error explains the rule')
  await shot(page, 'client-error')
  await page.getByLabel('Redirect URIs', { exact: true }).fill('https://notes.example/callback\nhttps://notes.example/auth/callback')
  await page.getByRole('button', { name: 'Save changes' }).click()
  await page.getByText('Changes saved.').waitFor()
  check((await page.getByLabel('Redirect URIs', { exact: true }).inputValue()) === 'https://notes.example/callback\nhttps://notes.example/auth/callback', 'redirect URIs saved')
  await shot(page, 'client')

  // Rotate the secret, after a confirmation.
  await page.getByRole('link', { name: 'Rotate secret…' }).click()
  await page.getByRole('heading', { name: /Rotate the secret of Example Notes/ }).waitFor()
  await shot(page, 'confirm')
  await page.getByRole('button', { name: 'Rotate secret' }).click()
  await page.getByRole('heading', { name: 'New secret for Example Notes' }).waitFor()
  const secret = await page.locator('#client_secret').inputValue()
  check(secret.length === 43 && secret !== firstSecret, 'a new secret is shown')
  await page.getByRole('link', { name: 'Done' }).click()

  // Disable it, after a confirmation.
  await page.getByRole('link', { name: 'Disable…' }).click()
  await page.getByRole('heading', { name: 'Disable Example Notes?' }).waitFor()
  await page.getByRole('button', { name: 'Disable client' }).click()
  await page.getByText('The client is disabled').waitFor()
  check(await page.getByRole('button', { name: 'Enable' }).isVisible(), 'an Enable button is offered')
  await shot(page, 'client-disabled')

  // The other pages.
  await page.goto(`${base}/admin`)
  await page.getByRole('link', { name: 'Example Notes' }).waitFor()
  check((await page.locator('.badge-off').innerText()) === 'disabled', 'the list shows the client disabled')
  await shot(page, 'clients')
  await page.getByRole('link', { name: 'Users' }).click()
  await page.getByRole('heading', { name: /Users/ }).waitFor()
  await shot(page, 'users')
  await page.getByRole('link', { name: '@alice.test' }).click()
  await page.getByRole('heading', { name: '@alice.test' }).waitFor()
  await shot(page, 'user')
  await page.getByRole('link', { name: 'End all sessions…' }).click()
  await page.getByRole('heading', { name: /End every session of @alice.test/ }).waitFor()
  await page.getByRole('button', { name: 'End all sessions' }).click()
  await page.getByText('Every session of this user has ended.').waitFor()
  await page.getByRole('link', { name: 'Keys' }).click()
  await page.getByRole('heading', { name: 'Signing keys' }).waitFor()
  await shot(page, 'keys')
  await page.getByRole('link', { name: 'Audit log' }).click()
  await page.getByRole('heading', { name: /Audit log/ }).waitFor()
  check((await page.content()).includes('client.disable'), 'the audit log lists the changes')
  await shot(page, 'audit')

  // On a phone, and in the dark.
  await page.setViewportSize({ width: 390, height: 844 })
  await page.goto(`${base}/admin`)
  await shot(page, 'clients-phone')
  await page.goto(`${base}/admin/clients/${clientId}`)
  await shot(page, 'client-phone')
  await page.setViewportSize({ width: 1280, height: 800 })
  await page.emulateMedia({ colorScheme: 'dark' })
  await page.goto(`${base}/admin/clients/${clientId}`)
  await shot(page, 'client-dark')

  console.log(JSON.stringify({ client_id: clientId, client_secret: secret }))
} finally {
  await browser.close()
}
