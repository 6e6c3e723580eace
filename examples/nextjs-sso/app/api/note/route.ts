// Writes a note (a `com.example.note` record) to the user's repository THROUGH atsso: the app
// sends its own atsso access token to `${issuer}/xrpc/com.atproto.repo.createRecord`; atsso checks
// the token's atproto permissions, sets `repo` to the user's DID and calls the user's PDS with
// its own DPoP-bound upstream session. The app never holds an ATProto token or key.
import { NextRequest, NextResponse } from "next/server";
import { decodeJwt } from "jose";
import { settings, appUrl } from "@/lib/atsso";

export async function POST(req: NextRequest) {
  const accessToken = req.cookies.get("access_token")?.value;
  if (!accessToken) return NextResponse.redirect(appUrl("/api/auth/refresh?next=/dashboard"), 303);
  const text = String((await req.formData()).get("text") ?? "").slice(0, 300);
  // The user's DID, for `repo` (atsso checks it is theirs: an app cannot write elsewhere).
  const idToken = req.cookies.get("id_token")?.value;
  const did = idToken ? decodeJwt(idToken).sub : undefined;
  const res = await fetch(`${settings().issuer}/xrpc/com.atproto.repo.createRecord`, {
    method: "POST",
    headers: { authorization: `Bearer ${accessToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      repo: did,
      collection: "com.example.note",
      record: { $type: "com.example.note", text, createdAt: new Date().toISOString() },
    }),
    cache: "no-store",
  });
  const body = await res.json().catch(() => ({}));
  // 403 insufficient_scope: the app was not granted the permission; 401: signed out meanwhile.
  const result = res.ok ? `created ${body.uri}` : `refused: ${res.status} ${body.error ?? ""} ${body.message ?? ""}`.trim();
  const back = appUrl("/dashboard");
  back.searchParams.set("note", result);
  return NextResponse.redirect(back, 303);
}
