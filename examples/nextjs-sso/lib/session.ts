// Who is signed in, for pages (Server Components): reads the cookies, never refreshes (pages
// cannot set cookies, so a rotated refresh token would be lost; refreshing is the proxy's and the
// refresh route's job).
import { cookies } from "next/headers";
import type { JWTPayload } from "jose";
import { verifyIdToken } from "@/lib/atsso";
import { sessionEnded } from "@/lib/ended-sessions";

export async function currentUser(): Promise<JWTPayload | null> {
  const idToken = (await cookies()).get("id_token")?.value;
  if (!idToken) return null;
  try {
    const claims = await verifyIdToken(idToken);
    // Checked again here, not only in proxy.ts: a page must not show a session that ended.
    return (await sessionEnded(claims)) ? null : claims;
  } catch {
    return null;
  }
}
