// The settings the receiver and the global sign-out need, read when used (not at import, so
// `next build` needs no .env). Auth.js reads the same variables itself.
import { createRemoteJWKSet } from "jose";

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (see .env.example)`);
  return value.replace(/\/+$/, "");
}

export const settings = () => ({
  issuer: env("AUTH_ATSSO_ISSUER"), // = atsso's ATSSO_PUBLIC_URL, the `iss` of its tokens
  clientId: env("AUTH_ATSSO_ID"),
  appUrl: env("AUTH_URL"),
});

// atsso's JWKS for logout tokens (Auth.js keeps its own copy for ID tokens). jose re-fetches on
// an unknown `kid`.
let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
export function JWKS() {
  jwks ??= createRemoteJWKSet(new URL(`${settings().issuer}/api/auth/jwks`));
  return jwks;
}
