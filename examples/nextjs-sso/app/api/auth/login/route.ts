// Starts a sign-in at atsso: PKCE S256 (atsso refuses `plain` and requires PKCE of public
// clients), `state` against CSRF, `nonce` bound to the ID token. `?prompt=none` is the silent
// SSO check: atsso answers at once, with a code if the browser is signed in there (and the app
// approved), else with error=login_required / consent_required.
import { NextRequest, NextResponse } from "next/server";
import {
  settings, redirectUri, randomToken, s256,
  LOGIN_COOKIE, loginCookieOptions, SILENT_COOKIE, silentCookieOptions,
} from "@/lib/atsso";

export async function GET(req: NextRequest) {
  const silent = req.nextUrl.searchParams.get("prompt") === "none";
  const { issuer, clientId, atprotoScopes } = settings();
  const verifier = randomToken(), state = randomToken(), nonce = randomToken();

  const url = new URL(`${issuer}/api/auth/oauth2/authorize`);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri(),
    scope: ["openid profile email", atprotoScopes].filter(Boolean).join(" "),
    state,
    nonce,
    code_challenge: await s256(verifier),
    code_challenge_method: "S256",
    ...(silent ? { prompt: "none" } : {}),
  }).toString();

  const res = NextResponse.redirect(url);
  res.cookies.set(LOGIN_COOKIE, JSON.stringify({ verifier, state, nonce, silent }), loginCookieOptions());
  if (silent) res.cookies.set(SILENT_COOKIE, "1", silentCookieOptions());
  return res;
}
