/**
 * An LTI launch's session (docs/lti.md): the tool's launch page opens
 * `#/launch/<token>/<role>/<route...>`; the token goes to this page's memory only (never
 * localStorage, sessionStorage or a cookie: a third-party frame may refuse them, and a token
 * kept there would outlive the LMS page), the address loses it, and it is renewed through
 * `POST /lti/session` while the page is open.
 */

export interface TokenClaims {
  sub: string;
  role: string;
  exp: number;
  iat?: number;
}

/** The claims a token carries (not verified: the server does that), or null. */
export function tokenClaims(token: string): TokenClaims | null {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof payload.sub !== "string" || typeof payload.role !== "string" || typeof payload.exp !== "number") return null;
    return payload as TokenClaims;
  } catch {
    return null;
  }
}

export interface Launched {
  token: string;
  user: { user_id: string; role: "student" | "teacher"; course_id: null };
  /** The route to show, as a hash: `#/course/<id>/play/<material>` or `#/teacher/<id>`. */
  hash: string;
}

/** The launch a hash carries, or null when it is not a launch route (or its token is bad). */
export function readLaunch(hash: string): Launched | null {
  const parts = hash.replace(/^#\/?/, "").split("/");
  if (parts[0] !== "launch" || parts.length < 4) return null;
  const [, token, role, ...route] = parts;
  const claims = tokenClaims(token);
  if (!claims || (role !== "student" && role !== "teacher") || claims.role !== role) return null;
  return { token, user: { user_id: claims.sub, role, course_id: null }, hash: `#/${route.join("/")}` };
}

/** Whether the page was opened by the tool's own LTI pages (`/lti/launch` opens it): the
 * referrer a same-origin page sends in full (`Referrer-Policy: same-origin`), and none from
 * another site. */
export function fromLaunchPage(referrer: string, origin: string): boolean {
  return referrer.startsWith(`${origin}/lti/`);
}

/** Renew when two thirds of the token's life are gone; retry a failed renewal this soon. */
export const RENEW_AT = 2 / 3;
export const RETRY_MS = 30_000;

export interface RenewalOptions {
  getToken: () => string | null;
  /** `POST /lti/session`: the new token; rejects with `{status}` (401: the session is over). */
  renew: () => Promise<string>;
  setToken: (token: string) => void;
  onExpired: () => void;
  now?: () => number;
}

/**
 * Keeps the session's token renewed while the page is open: each renewal is scheduled at
 * RENEW_AT of the current token's lifetime; a failure other than 401 is retried every RETRY_MS
 * while the token lasts; a 401 (or a token that expired meanwhile, e.g. a laptop asleep) ends
 * the session. Returns the function that stops it.
 */
export function keepRenewed(options: RenewalOptions): () => void {
  const now = options.now ?? Date.now;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const schedule = (delayMs: number) => {
    if (!stopped) timer = setTimeout(() => void attempt(), Math.max(0, delayMs));
  };
  const nextRenewal = () => {
    const claims = tokenClaims(options.getToken() ?? "");
    if (!claims) return;
    const issued = claims.iat ?? now() / 1000;
    schedule((issued + (claims.exp - issued) * RENEW_AT) * 1000 - now());
  };
  const attempt = async () => {
    try {
      const token = await options.renew();
      if (stopped) return;
      options.setToken(token);
      nextRenewal();
    } catch (e) {
      if (stopped) return;
      const claims = tokenClaims(options.getToken() ?? "");
      const status = (e as { status?: number }).status;
      if (status === 401 || !claims || claims.exp * 1000 <= now()) options.onExpired();
      else schedule(Math.min(RETRY_MS, claims.exp * 1000 - now()));
    }
  };
  nextRenewal();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
