// Verifying an OIDC Back-Channel Logout 1.0 logout token (§2.6). Self-contained on purpose: the
// Auth.js example carries a copy of this file.
import { jwtVerify, errors, type JWTVerifyGetKey, type JWTPayload } from "jose";

const EVENT = "http://schemas.openid.net/event/backchannel-logout";

export type LogoutTokenResult =
  | { ok: true; sid?: string; sub?: string; jti: string; exp: number }
  | { ok: false; error: string };

export async function verifyLogoutToken(
  token: string,
  opts: { issuer: string; clientId: string; jwks: JWTVerifyGetKey },
): Promise<LogoutTokenResult> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, opts.jwks, {
      issuer: opts.issuer,
      audience: opts.clientId,
      algorithms: ["RS256"], // atsso signs logout tokens with RS256
      typ: "logout+jwt",
      // atsso's logout tokens live 120 s (exp = iat + 120); each delivery attempt signs a new one.
      maxTokenAge: "2m",
      clockTolerance: 30,
      requiredClaims: ["iat", "exp", "jti", "events"],
    }));
  } catch (e) {
    const reason = e instanceof errors.JOSEError ? `${e.code}: ${e.message}` : "invalid token";
    return { ok: false, error: `logout token refused: ${reason}` };
  }
  const events = payload.events;
  if (typeof events !== "object" || events === null || Array.isArray(events) || !(EVENT in events)) {
    return { ok: false, error: "events claim without the back-channel logout event" };
  }
  // A nonce would mean an ID token passed off as a logout token (§2.4).
  if ("nonce" in payload) return { ok: false, error: "a logout token must not have a nonce" };
  const sid = typeof payload.sid === "string" ? payload.sid : undefined;
  const sub = typeof payload.sub === "string" ? payload.sub : undefined;
  if (!sid && !sub) return { ok: false, error: "neither sid nor sub" };
  if (typeof payload.jti !== "string" || typeof payload.exp !== "number") {
    return { ok: false, error: "jti and exp are required" };
  }
  return { ok: true, sid, sub, jti: payload.jti, exp: payload.exp };
}
