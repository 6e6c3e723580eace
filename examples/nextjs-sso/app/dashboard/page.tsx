// The guarded page (proxy.ts has already checked the session). Shows the DID (`sub`, the stable
// user id) and the handle (`preferred_username`, which can change: never key accounts by it).
import { cookies } from "next/headers";
import { redirect } from "next/navigation";
import { currentUser } from "@/lib/session";
import { peekJti } from "@/lib/atsso";

export default async function Dashboard() {
  const user = await currentUser();
  if (!user) redirect("/");
  const accessTokenId = peekJti((await cookies()).get("access_token")?.value);
  return (
    <main>
      <h2>Dashboard</h2>
      <dl>
        <dt>DID</dt>
        <dd data-testid="did">{String(user.sub)}</dd>
        <dt>Handle</dt>
        <dd data-testid="handle">{String(user.preferred_username ?? "")}</dd>
        <dt>Access token id (changes on refresh)</dt>
        <dd data-testid="access-token-id">{accessTokenId ?? "none"}</dd>
      </dl>
      <p>
        <a href="/api/auth/refresh?next=/dashboard" data-testid="refresh">Refresh tokens</a>
      </p>
      <form method="post" action="/api/auth/logout">
        <button type="submit" data-testid="sign-out">Sign out everywhere</button>
      </form>
    </main>
  );
}
