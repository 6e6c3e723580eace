// Rotates atsso's tokens: `unstable_update` runs the `jwt` callback with trigger "update" (which
// calls atsso's token endpoint, see lib/refresh.ts) and writes the new session cookie on this
// response. Refused (the grant was revoked or the atsso session ended) → signed out, home.
import { NextRequest, NextResponse } from "next/server";
import { unstable_update } from "@/auth";

export async function GET(req: NextRequest) {
  const next = req.nextUrl.searchParams.get("next") ?? "/dashboard";
  const back = next.startsWith("/") && !next.startsWith("//") ? next : "/dashboard"; // no open redirect
  const session = await unstable_update({});
  return NextResponse.redirect(new URL(session ? back : "/", req.nextUrl));
}
