// Talking to atsso as a public client: settings, PKCE, the token endpoint, ID-token checks and
// the token cookies. Settings are read when used, not at import, so `next build` needs no .env.
import { createRemoteJWKSet, jwtVerify, base64url, decodeJwt, type JWTPayload } from "jose";
import type { NextResponse } from "next/server";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (see .env.example)`);
  return value.replace(/\/+$/, "");
}

export const settings = () => ({
  issuer: env("ATSSO_ISSUER"), // = atsso's ATSSO_PUBLIC_URL; compared with `iss` character for character
  clientId: env("ATSSO_CLIENT_ID"),
  appUrl: env("APP_URL"),
  // Optional: atproto permissions to ask for (space-separated `atproto:` scopes the admin allowed
  // this client), e.g. "atproto:repo:com.example.note?action=create" for the dashboard's note form.
  atprotoScopes: (process.env.ATSSO_ATPROTO_SCOPES ?? "").trim(),
});
export const redirectUri = () => `${settings().appUrl}/api/auth/callback`;
export const appUrl = (path: string) => new URL(path, settings().appUrl);

// One JWKS cache per process. jose re-fetches on an unknown `kid` (atsso publishes rotated keys
// before they sign) and honours a 30 s cooldown between fetches.
let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
export function JWKS() {
  jwks ??= createRemoteJWKSet(new URL(`${settings().issuer}/api/auth/jwks`));
  return jwks;
}

export const randomToken = () => base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
export const s256 = async (verifier: string) =>
  base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));

/** A verified ID token: `sub` = the DID, `preferred_username` = the handle, `sid` = the atsso session. */
export async function verifyIdToken(idToken: string): Promise<JWTPayload> {
  const { issuer, clientId } = settings();
  const { payload } = await jwtVerify(idToken, JWKS(), {
    issuer,
    audience: clientId,
    algorithms: ["RS256"], // atsso signs ID tokens with RS256 only
    typ: "JWT",
  });
  return payload;
}

export type Tokens = { access_token: string; refresh_token: string; id_token: string; expires_in: number };

/** A request to the token endpoint as a public client: client_id in the body and no secret. */
export async function tokenRequest(params: Record<string, string>) {
  const { issuer, clientId } = settings();
  const res = await fetch(`${issuer}/api/auth/oauth2/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams({ client_id: clientId, ...params }),
    cache: "no-store",
  });
  const body = await res.json().catch(() => ({ error: "not_json" }));
  return { status: res.status, body };
}

const MONTH = 30 * 24 * 3600; // atsso's refresh tokens live 30 days by default
const cookieBase = () => ({
  httpOnly: true,
  secure: settings().appUrl.startsWith("https://"),
  sameSite: "lax" as const, // lax: the cookies must come along on the redirect back from atsso
  path: "/",
});
export const TOKEN_COOKIES = ["access_token", "id_token", "refresh_token"] as const;

export function setTokens(res: NextResponse, t: Tokens) {
  const base = cookieBase();
  res.cookies.set("access_token", t.access_token, { ...base, maxAge: t.expires_in });
  // The ID token outlives its `exp` here on purpose: it is the id_token_hint at logout (atsso
  // accepts an expired one), and an expired one sends the proxy to the refresh route.
  res.cookies.set("id_token", t.id_token, { ...base, maxAge: MONTH });
  // Refresh tokens are single use: this must always be the newest one.
  res.cookies.set("refresh_token", t.refresh_token, { ...base, maxAge: MONTH });
}

export function clearTokens(res: NextResponse) {
  for (const name of [...TOKEN_COOKIES, LOGIN_COOKIE]) res.cookies.delete(name);
}

/** The PKCE verifier, state and nonce of a sign-in in progress (15 minutes). */
export const LOGIN_COOKIE = "atsso_login";
export const loginCookieOptions = () => ({ ...cookieBase(), maxAge: 900 });

/** Set once a silent (prompt=none) check was made, so a signed-out visitor is not bounced to
 * atsso on every page load. */
export const SILENT_COOKIE = "atsso_silent_checked";
export const silentCookieOptions = () => ({ ...cookieBase(), maxAge: 600 });

/** For display only (the dashboard shows which access token the app holds): not a check. */
export function peekJti(accessToken: string | undefined): string | undefined {
  if (!accessToken) return undefined;
  try {
    const jti = decodeJwt(accessToken).jti;
    return typeof jti === "string" ? jti : undefined;
  } catch {
    return undefined;
  }
}
