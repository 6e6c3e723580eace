// Auth.js v5 with atsso as a generic OIDC provider (discovery, code + PKCE + state + nonce, a
// confidential client). The one addition: the `jwt` callback drops the session once the
// back-channel receiver has recorded that its atsso session (`sid`) ended.
import NextAuth, { type DefaultSession } from "next-auth";
import { sessionEnded } from "@/lib/ended-sessions";

declare module "next-auth" {
  interface Session {
    user: { did: string; handle?: string } & DefaultSession["user"];
  }
}

export const { handlers, auth, signIn, signOut } = NextAuth({
  providers: [
    {
      id: "atsso", // the callback is /api/auth/callback/atsso
      name: "atsso",
      type: "oidc",
      issuer: process.env.AUTH_ATSSO_ISSUER, // = ATSSO_PUBLIC_URL, no trailing slash
      clientId: process.env.AUTH_ATSSO_ID,
      clientSecret: process.env.AUTH_ATSSO_SECRET, // sent with client_secret_basic
      checks: ["pkce", "state", "nonce"], // atsso requires PKCE S256 of every client
      authorization: { params: { scope: "openid profile email" } },
    },
  ],
  session: { strategy: "jwt" }, // the session lives in an encrypted cookie: no database
  callbacks: {
    async jwt({ token, account, profile }) {
      if (account && profile) {
        // Sign-in: `profile` holds the verified ID token's claims. Keep the DID (`sub`, the
        // stable id), the handle, the atsso session id (for back-channel logout) and the ID
        // token (the id_token_hint of a global sign-out). The cookie is encrypted (JWE).
        return {
          ...token,
          did: profile.sub,
          handle: profile.preferred_username,
          sid: profile.sid,
          id_token: account.id_token,
          signed_in_at: Math.floor(Date.now() / 1000), // token.iat changes each time Auth.js re-signs
        };
      }
      // Every later request: a session whose sid ended elsewhere is no session (Auth.js deletes
      // the cookie when this returns null). No refresh here: Auth.js does not rotate tokens, and
      // atsso's refresh tokens are single use (two parallel refreshes would revoke the grant).
      if (await sessionEnded({ sid: token.sid, sub: token.did, iat: token.signed_in_at })) return null;
      return token;
    },
    async session({ session, token }) {
      // What pages (and /api/auth/session, readable by browser JS) see: no tokens.
      session.user.did = String(token.did);
      session.user.handle = typeof token.handle === "string" ? token.handle : undefined;
      return session;
    },
  },
});
