// Shows the DID (`sub`, the stable user id) and the handle (`preferred_username`, which can
// change: never key accounts by it). auth() runs the `jwt` callback, so a session ended by a
// back-channel logout is already gone here.
import { redirect } from "next/navigation";
import { auth } from "@/auth";

export default async function Dashboard() {
  const session = await auth();
  if (!session) redirect("/");
  return (
    <main>
      <h2>Dashboard</h2>
      <dl>
        <dt>DID</dt>
        <dd data-testid="did">{session.user.did}</dd>
        <dt>Handle</dt>
        <dd data-testid="handle">{session.user.handle ?? ""}</dd>
        <dt>Access token id (changes on refresh)</dt>
        <dd data-testid="access-token-id">{session.accessTokenId ?? "none"}</dd>
      </dl>
      <p>
        {/* A plain link, not next/link: route handlers must not be prefetched. */}
        <a href="/api/refresh?next=/dashboard" data-testid="refresh">Refresh tokens</a>
      </p>
      <form method="post" action="/api/logout">
        <button type="submit" data-testid="sign-out">Sign out everywhere</button>
      </form>
    </main>
  );
}
