// Home. Signed out and not checked yet: a silent SSO check (prompt=none), so a user signed in
// at atsso through another app is signed in here without a click. If atsso says login_required
// (or consent_required), the callback brings the browser back here and the button shows.
import { cookies } from "next/headers";
import { redirect } from "next/navigation";
import { currentUser } from "@/lib/session";
import { SILENT_COOKIE } from "@/lib/atsso";

export default async function Home() {
  const user = await currentUser();
  if (user) {
    return (
      <main>
        <p data-testid="status">Signed in as <b>{String(user.preferred_username ?? user.sub)}</b>.</p>
        <p><a href="/dashboard">Dashboard</a></p>
      </main>
    );
  }
  if (!(await cookies()).has(SILENT_COOKIE)) redirect("/api/auth/login?prompt=none");
  return (
    <main>
      <p data-testid="status">Signed out.</p>
      {/* A plain link, not next/link: route handlers must not be prefetched. */}
      <p><a href="/api/auth/login" data-testid="sign-in">Sign in with your handle</a></p>
    </main>
  );
}
