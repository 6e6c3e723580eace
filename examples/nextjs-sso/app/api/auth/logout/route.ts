// "Sign out everywhere": clears this app's cookies and sends the browser to atsso's end-session
// endpoint, which ends the atsso session, revokes every app's tokens under it and tells the other
// apps through their back-channel receivers (this one too).
import { NextRequest, NextResponse } from "next/server";
import { settings, clearTokens, SILENT_COOKIE, silentCookieOptions } from "@/lib/atsso";

export async function POST(req: NextRequest) {
  const { issuer, clientId, appUrl } = settings();
  const url = new URL(`${issuer}/api/auth/oauth2/endsession`);
  const idToken = req.cookies.get("id_token")?.value;
  // With a hint naming the browser's own atsso session, atsso signs out at once (an expired ID
  // token is fine); without one it asks the user to confirm.
  if (idToken) url.searchParams.set("id_token_hint", idToken);
  url.searchParams.set("client_id", clientId);
  url.searchParams.set("post_logout_redirect_uri", `${appUrl}/`); // registered, exact match
  // 303, not the default 307: the browser must GET atsso, not re-POST this form there.
  const res = NextResponse.redirect(url, 303);
  clearTokens(res);
  res.cookies.set(SILENT_COOKIE, "1", silentCookieOptions()); // back home: no silent check right away
  return res;
}
