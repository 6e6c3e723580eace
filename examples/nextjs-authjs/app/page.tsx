import { auth, signIn } from "@/auth";

export default async function Home() {
  const session = await auth(); // null once a back-channel logout ended the atsso session
  if (session) {
    return (
      <main>
        <p data-testid="status">Signed in as <b>{session.user.handle ?? session.user.did}</b>.</p>
        <p><a href="/dashboard">Dashboard</a></p>
      </main>
    );
  }
  return (
    <main>
      <p data-testid="status">Signed out.</p>
      <form
        action={async () => {
          "use server";
          await signIn("atsso", { redirectTo: "/dashboard" });
        }}
      >
        <button type="submit" data-testid="sign-in">Sign in with your handle</button>
      </form>
    </main>
  );
}
