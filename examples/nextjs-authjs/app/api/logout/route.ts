// "Sign out everywhere". Auth.js's signOut() ends only this app's cookie; atsso's end-session
// endpoint ends the atsso session, revokes every app's tokens under it and tells every app with
// a back-channel receiver (this one too). The ID token kept in the encrypted session cookie is
// the id_token_hint: with it atsso signs out at once, without asking the user to confirm.
import { NextRequest, NextResponse } from "next/server";
import { getToken } from "next-auth/jwt";
import { signOut } from "@/auth";
import { settings } from "@/lib/settings";

export async function POST(req: NextRequest) {
  const { issuer, clientId, appUrl } = settings();
  const jwt = await getToken({ req, secret: process.env.AUTH_SECRET, secureCookie: appUrl.startsWith("https://") });
  const url = new URL(`${issuer}/api/auth/oauth2/endsession`);
  if (typeof jwt?.id_token === "string") url.searchParams.set("id_token_hint", jwt.id_token);
  url.searchParams.set("client_id", clientId);
  url.searchParams.set("post_logout_redirect_uri", `${appUrl}/`); // registered, exact match
  await signOut({ redirect: false }); // deletes the session cookie (Next.js adds it to this response)
  // 303, not the default 307: the browser must GET atsso, not re-POST this form there.
  return NextResponse.redirect(url, 303);
}
