// What the back-channel receiver learnt: atsso sessions (`sid`) that have ended, users (`sub`)
// whose every session ended, and the logout-token `jti`s already used.
//
// EXAMPLE ONLY: an in-memory map with a TTL, good for one `next start` process. In production
// use a store every instance shares (Redis with SET ... EX, or a database table swept by expiry):
// a logout token reaches one instance, and every instance must then refuse that session.
//
// Why globalThis and not a plain module-level Map: Next.js may bundle the receiver route, the
// Auth.js route and each page separately, each with its own copy of this module; they all run
// in the one `next start` Node.js process, so a Map hung on globalThis under a Symbol.for key is
// the one Map they all see.

type Store = {
  endedSids: Map<string, number>; // sid -> forget after (ms)
  endedSubs: Map<string, { at: number; until: number }>; // sub -> ended at (s), forget after (ms)
  seenJtis: Map<string, number>; // jti -> forget after (ms)
};

const KEY = Symbol.for("atsso-example.ended-sessions");
const g = globalThis as typeof globalThis & { [KEY]?: Store };
const store: Store = (g[KEY] ??= { endedSids: new Map(), endedSubs: new Map(), seenJtis: new Map() });

// Keep an ended sid as long as the longest cookie that could still carry it (the refresh token,
// 30 days): a forgotten sid would let an old ID-token cookie back in.
const KEEP_ENDED_MS = 30 * 24 * 3600 * 1000;

function sweep(map: Map<string, number | { until: number }>) {
  const now = Date.now();
  for (const [key, v] of map) if ((typeof v === "number" ? v : v.until) <= now) map.delete(key);
}

/** Records a logout token's jti; false if it was seen before (a replay). Kept until the token's
 * `exp` plus the clock tolerance, after which the token is refused as expired anyway. */
export async function rememberJti(jti: string, exp: number): Promise<boolean> {
  sweep(store.seenJtis);
  if (store.seenJtis.has(jti)) return false;
  store.seenJtis.set(jti, (exp + 60) * 1000);
  return true;
}

/** A back-channel logout for `sid` (atsso always sends it) or, failing that, every session of `sub`. */
export async function endSession(sid: string | undefined, sub: string | undefined): Promise<void> {
  sweep(store.endedSids);
  sweep(store.endedSubs);
  const until = Date.now() + KEEP_ENDED_MS;
  if (sid) store.endedSids.set(sid, until);
  else if (sub) store.endedSubs.set(sub, { at: Math.floor(Date.now() / 1000), until });
}

/** Has the atsso session behind these ID-token claims ended? */
export async function sessionEnded(claims: { sid?: unknown; sub?: unknown; iat?: unknown }): Promise<boolean> {
  if (typeof claims.sid === "string" && (store.endedSids.get(claims.sid) ?? 0) > Date.now()) return true;
  const bySub = typeof claims.sub === "string" ? store.endedSubs.get(claims.sub) : undefined;
  return !!bySub && bySub.until > Date.now() && typeof claims.iat === "number" && claims.iat <= bySub.at;
}
