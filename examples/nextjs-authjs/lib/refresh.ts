// Rotating atsso's tokens from Auth.js. atsso's refresh tokens are SINGLE USE: each refresh
// answers a new refresh token that must replace the old one, and presenting a spent one again is
// taken as theft (the whole grant is revoked, every app of the session keeps working but this
// one is signed out). Two rules follow:
//   1. Refresh only where the new session cookie is written: in a route handler or server action
//      through `unstable_update` (app/api/refresh/route.ts), never in a Server Component render
//      (auth() there cannot set cookies: the new token would be lost and the old one reused).
//   2. One refresh per token at a time: requests racing with the same cookie share one call
//      (below, per process). With several instances, also set atsso's
//      ATSSO_REFRESH_RETRY_WINDOW_SECS (e.g. 10) so a concurrent second presentation is a retry.
import { settings } from "@/lib/settings";

export type Rotated =
  | { ok: true; access_token: string; refresh_token: string; id_token?: string; expires_at: number }
  | { ok: false; signedOut: boolean; error: string };

const KEY = Symbol.for("atsso-example.refreshes-in-flight");
const g = globalThis as typeof globalThis & { [KEY]?: Map<string, Promise<Rotated>> };
const inFlight: Map<string, Promise<Rotated>> = (g[KEY] ??= new Map());

export function rotate(refreshToken: string): Promise<Rotated> {
  let pending = inFlight.get(refreshToken);
  if (!pending) {
    pending = call(refreshToken);
    inFlight.set(refreshToken, pending);
    // Kept a minute so a request that read the old cookie just before the answer still gets it.
    pending.finally(() => setTimeout(() => inFlight.delete(refreshToken), 60_000).unref?.());
  }
  return pending;
}

async function call(refreshToken: string): Promise<Rotated> {
  const { issuer, clientId } = settings();
  const secret = process.env.AUTH_ATSSO_SECRET ?? "";
  let res: Response;
  try {
    res = await fetch(`${issuer}/api/auth/oauth2/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
        // client_secret_basic: both parts form-urlencoded first (RFC 6749 §2.3.1)
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString("base64")}`,
      },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken }),
      cache: "no-store",
    });
  } catch {
    return { ok: false, signedOut: false, error: "atsso unreachable" };
  }
  const body = await res.json().catch(() => ({}));
  if (res.status === 200 && typeof body.access_token === "string" && typeof body.refresh_token === "string") {
    return {
      ok: true,
      access_token: body.access_token,
      refresh_token: body.refresh_token,
      id_token: body.id_token,
      expires_at: Math.floor(Date.now() / 1000) + Number(body.expires_in ?? 0),
    };
  }
  // 400 invalid_grant: revoked, reused, or the atsso session ended (signed out elsewhere).
  // 5xx (e.g. 503 temporarily_unavailable: the user's PDS is down): the token was NOT spent.
  return { ok: false, signedOut: res.status === 400 || res.status === 401, error: String(body.error ?? res.status) };
}
