// atsso POSTs `logout_token=<JWT>` here when a session ends anywhere (sign-out in another app,
// /logout at atsso, an admin, the user's PDS). Verified → the sid is recorded as ended → 200.
// The next request of that session gets no session (auth.ts, `jwt` callback).
// Anything else → 400 with a JSON error: atsso gives up on a 4xx (but 408/429), so answer 5xx
// only when you want a retry (e.g. your shared store is down).
import { NextRequest, NextResponse } from "next/server";
import { JWKS, settings } from "@/lib/settings";
import { verifyLogoutToken } from "@/lib/logout-token";
import { endSession, rememberJti } from "@/lib/ended-sessions";

const headers = { "cache-control": "no-store" };
const refuse = (error_description: string) =>
  NextResponse.json({ error: "invalid_request", error_description }, { status: 400, headers });

export async function POST(req: NextRequest) {
  let token: FormDataEntryValue | null = null;
  try {
    token = (await req.formData()).get("logout_token");
  } catch {
    return refuse("expected an application/x-www-form-urlencoded body");
  }
  if (typeof token !== "string" || token === "") return refuse("logout_token is missing");

  const { issuer, clientId } = settings();
  const result = await verifyLogoutToken(token, { issuer, clientId, jwks: JWKS() });
  if (!result.ok) return refuse(result.error);
  // Checked after the signature, so a forged token cannot fill the jti store.
  if (!(await rememberJti(result.jti, result.exp))) return refuse("logout token replayed (jti seen before)");

  await endSession(result.sid, result.sub);
  return new NextResponse(null, { status: 200, headers });
}
