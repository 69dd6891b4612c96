/** A token shaped like the API's (a JWT, not signed: the browser reads only its `sub`). */
export function jwt(sub: string): string {
  const part = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, role: "student", exp: 2e9 })}.c2ln`;
}

/** An unsigned token with these claims (the browser never verifies one). */
export function tokenWith(claims: Record<string, unknown>): string {
  const part = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return `${part({ alg: "RS256", kid: "k1" })}.${part(claims)}.c2ln`;
}
