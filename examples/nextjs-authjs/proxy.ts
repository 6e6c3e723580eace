// Guards /dashboard: no session (never signed in, or its atsso session ended by a back-channel
// logout: the `jwt` callback returned null) → home; an access token about to expire → the refresh
// route, which rotates the tokens and writes the new session cookie. Next.js 16 runs proxy.ts in
// the Node.js runtime, in the `next start` process, so it sees the receiver's in-memory store.
import { NextResponse } from "next/server";
import { auth } from "@/auth";

export const proxy = auth((req) => {
  const session = req.auth;
  if (!session) return NextResponse.redirect(new URL("/", req.nextUrl));
  if (session.accessTokenExpiresAt - 60 <= Date.now() / 1000) {
    const next = req.nextUrl.pathname + req.nextUrl.search;
    return NextResponse.redirect(new URL(`/api/refresh?next=${encodeURIComponent(next)}`, req.nextUrl));
  }
  return NextResponse.next();
});

// Only the pages it guards: assets, prefetches and the auth routes never trigger a refresh.
export const config = { matcher: ["/dashboard/:path*"] };
