// The guarded page (proxy.ts has already checked the session). Shows the DID (`sub`, the stable
// user id) and the handle (`preferred_username`, which can change: never key accounts by it).
import { cookies } from "next/headers";
import { redirect } from "next/navigation";
import { currentUser } from "@/lib/session";
import { peekJti } from "@/lib/atsso";

export default async function Dashboard({ searchParams }: { searchParams: Promise<{ note?: string }> }) {
  const { note } = await searchParams;
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
      {/* Acting in the Atmosphere through atsso (needs ATSSO_ATPROTO_SCOPES, see the README). */}
      <form method="post" action="/api/note">
        <input name="text" defaultValue="Hello from Notes" aria-label="Note" data-testid="note-text" />
        <button type="submit" data-testid="write-note">Write a note to your repository</button>
      </form>
      {note && <p data-testid="note-result">{note}</p>}
      <form method="post" action="/api/auth/logout">
        <button type="submit" data-testid="sign-out">Sign out everywhere</button>
      </form>
    </main>
  );
}
