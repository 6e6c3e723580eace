// Auth.js v5 with atsso as a generic OIDC provider (discovery, code + PKCE + state + nonce, a
// confidential client). Additions: the `jwt` callback drops the session once the back-channel
// receiver has recorded that its atsso session (`sid`) ended, and rotates atsso's tokens when
// asked through `unstable_update` (see lib/refresh.ts for why only there).
import NextAuth, { type DefaultSession } from "next-auth";
import { decodeJwt } from "jose";
import { sessionEnded } from "@/lib/ended-sessions";
import { rotate } from "@/lib/refresh";

declare module "next-auth" {
  interface Session {
    user: { did: string; handle?: string } & DefaultSession["user"];
    /** When the access token expires (s since the epoch): proxy.ts refreshes a minute before. */
    accessTokenExpiresAt: number;
    /** The access token's `jti`, shown on the dashboard (changes on refresh); not the token. */
    accessTokenId?: string;
  }
}

const jtiOf = (accessToken: unknown) => {
  try {
    const jti = typeof accessToken === "string" ? decodeJwt(accessToken).jti : undefined;
    return typeof jti === "string" ? jti : undefined;
  } catch {
    return undefined;
  }
};

export const { handlers, auth, signIn, signOut, unstable_update } = NextAuth({
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
  session: { strategy: "jwt" }, // the session lives in an encrypted cookie (JWE): no database
  callbacks: {
    async jwt({ token, account, profile, trigger }) {
      if (account && profile) {
        // Sign-in: `profile` holds the verified ID token's claims. Keep the DID (`sub`, the
        // stable id), the handle, the atsso session id (for back-channel logout), the tokens
        // (the ID token is the id_token_hint of a global sign-out).
        return {
          ...token,
          did: profile.sub,
          handle: profile.preferred_username,
          sid: profile.sid,
          id_token: account.id_token,
          access_token: account.access_token,
          refresh_token: account.refresh_token,
          expires_at: account.expires_at,
          signed_in_at: Math.floor(Date.now() / 1000), // token.iat changes each time Auth.js re-signs
        };
      }
      // Every later request: a session whose sid ended elsewhere is no session (Auth.js deletes
      // the cookie when this returns null).
      if (await sessionEnded({ sid: token.sid, sub: token.did, iat: token.signed_in_at })) return null;
      if (trigger === "update" && typeof token.refresh_token === "string") {
        const rotated = await rotate(token.refresh_token);
        if (rotated.ok) {
          return {
            ...token,
            access_token: rotated.access_token,
            refresh_token: rotated.refresh_token,
            id_token: rotated.id_token ?? token.id_token,
            expires_at: rotated.expires_at,
          };
        }
        if (rotated.signedOut) return null; // refused: the grant is gone, so is the session
      }
      return token;
    },
    async session({ session, token }) {
      // What pages (and /api/auth/session, readable by browser JS) see: no tokens.
      session.user.did = String(token.did);
      session.user.handle = typeof token.handle === "string" ? token.handle : undefined;
      session.accessTokenExpiresAt = Number(token.expires_at ?? 0);
      session.accessTokenId = jtiOf(token.access_token);
      return session;
    },
  },
});
