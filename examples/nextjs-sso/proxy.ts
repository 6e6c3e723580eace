// Guards /dashboard. Signed in = a valid ID token whose atsso session (`sid`) has not ended by a
// back-channel logout, plus a live access-token cookie. An expired token goes to the refresh
// route; an ended session is signed out here, without asking atsso.
//
// Next.js 16 runs proxy.ts in the Node.js runtime (its default and only runtime; a `runtime`
// option is refused), in the `next start` process, which is what lets it read the in-memory
// ended-session store (see lib/ended-sessions.ts). On Next.js 15 this file is middleware.ts
// exporting `middleware`, set `export const config = { runtime: "nodejs", ... }` there.
import { NextRequest, NextResponse } from "next/server";
import { appUrl, verifyIdToken, clearTokens, SILENT_COOKIE, silentCookieOptions } from "@/lib/atsso";
import { sessionEnded } from "@/lib/ended-sessions";

export async function proxy(req: NextRequest) {
  const idToken = req.cookies.get("id_token")?.value;
  if (idToken) {
    let claims;
    try {
      claims = await verifyIdToken(idToken);
    } catch {
      // expired (ID tokens live 1 h) or invalid: a refresh, below, decides
    }
    if (claims && (await sessionEnded(claims))) {
      const res = NextResponse.redirect(appUrl("/"));
      clearTokens(res);
      res.cookies.set(SILENT_COOKIE, "1", silentCookieOptions()); // land on "signed out", not at atsso
      return res;
    }
    if (claims && req.cookies.has("access_token")) return NextResponse.next();
  }
  if (req.cookies.has("refresh_token")) {
    const next = req.nextUrl.pathname + req.nextUrl.search;
    return NextResponse.redirect(appUrl(`/api/auth/refresh?next=${encodeURIComponent(next)}`));
  }
  return NextResponse.redirect(appUrl("/api/auth/login"));
}

// Only the pages it guards: assets, prefetches of other pages and the auth routes never trigger a
// refresh (two refreshes with one single-use token would revoke the grant).
export const config = { matcher: ["/dashboard/:path*"] };
