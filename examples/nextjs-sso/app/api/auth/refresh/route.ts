// Rotates the tokens. atsso's refresh tokens are SINGLE USE: the response carries a new refresh
// token (and new access and ID tokens) that must replace the cookies every time; presenting a
// used one again revokes the whole grant. So the refresh happens here only, in one route the
// proxy redirects to, never from a Server Component (it cannot set cookies: the new token would
// be lost) and never from several requests at once.
import { NextRequest, NextResponse } from "next/server";
import { appUrl, tokenRequest, verifyIdToken, setTokens, clearTokens, SILENT_COOKIE, silentCookieOptions } from "@/lib/atsso";

export async function GET(req: NextRequest) {
  const next = req.nextUrl.searchParams.get("next") ?? "/dashboard";
  const back = next.startsWith("/") && !next.startsWith("//") ? next : "/dashboard"; // no open redirect
  const refreshToken = req.cookies.get("refresh_token")?.value;
  if (!refreshToken) return NextResponse.redirect(appUrl("/api/auth/login"));

  const { status, body } = await tokenRequest({ grant_type: "refresh_token", refresh_token: refreshToken });
  if (status === 503) {
    // temporarily_unavailable: the user's PDS is unreachable. The refresh token was NOT spent:
    // keep the cookies and try again later. Not a sign-out.
    return new NextResponse("The sign-in service is busy, try again shortly.", {
      status: 503,
      headers: { "retry-after": req.headers.get("retry-after") ?? "5" },
    });
  }
  if (status !== 200) {
    // invalid_grant: revoked, reused, or the atsso session ended (a sign-out elsewhere).
    const res = NextResponse.redirect(appUrl("/"));
    clearTokens(res);
    res.cookies.set(SILENT_COOKIE, "1", silentCookieOptions()); // show "signed out", no silent bounce
    return res;
  }
  try {
    await verifyIdToken(body.id_token); // a refreshed ID token has no nonce: none to check
  } catch {
    return new NextResponse("invalid ID token", { status: 502 });
  }
  const res = NextResponse.redirect(appUrl(back));
  setTokens(res, body);
  return res;
}
