// atsso sends the browser back here with `code`, `state` and `iss` (or `error`). Check state and
// iss, exchange the code (it lives 60 s) with the PKCE verifier, verify the ID token and nonce.
import { NextRequest, NextResponse } from "next/server";
import { settings, appUrl, redirectUri, tokenRequest, verifyIdToken, setTokens, LOGIN_COOKIE } from "@/lib/atsso";

const fail = (message: string) => new NextResponse(message, { status: 400 });
// What atsso answers a prompt=none request when it cannot sign the user in silently.
const SILENT_MISSES = ["login_required", "consent_required", "interaction_required"];

export async function GET(req: NextRequest) {
  const q = req.nextUrl.searchParams;
  let pending: { verifier: string; state: string; nonce: string; silent?: boolean } | null = null;
  try {
    pending = JSON.parse(req.cookies.get(LOGIN_COOKIE)?.value ?? "null");
  } catch {}
  if (!pending || q.get("state") !== pending.state) return fail("state mismatch: start again from the home page");
  if (q.get("iss") !== settings().issuer) return fail("wrong issuer"); // RFC 9207: mix-up defence

  const error = q.get("error");
  if (error) {
    if (pending.silent && SILENT_MISSES.includes(error)) {
      // Not signed in at atsso (or the app is not approved yet): show the sign-in button.
      const res = NextResponse.redirect(appUrl("/"));
      res.cookies.delete(LOGIN_COOKIE);
      return res;
    }
    return fail(`sign-in refused: ${error}`);
  }

  const { status, body } = await tokenRequest({
    grant_type: "authorization_code",
    code: q.get("code") ?? "",
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  if (status !== 200) return fail(`token error: ${body.error ?? status}`);
  let claims;
  try {
    claims = await verifyIdToken(body.id_token);
  } catch {
    return fail("invalid ID token");
  }
  if (claims.nonce !== pending.nonce) return fail("nonce mismatch");

  const res = NextResponse.redirect(appUrl("/dashboard"));
  res.cookies.delete(LOGIN_COOKIE);
  setTokens(res, body);
  return res;
}
