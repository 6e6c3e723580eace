// Auth.js's own routes: /api/auth/signin, /callback/atsso, /session, /signout, ...
// (app/api/auth/backchannel-logout is a more specific route and wins over this catch-all.)
import { handlers } from "@/auth";

export const { GET, POST } = handlers;
