import { vi } from "vitest";

export type Handler = (url: URL, init: RequestInit | undefined) => unknown;

/**
 * A fetch that answers from handlers keyed by "METHOD /path" (the query is the handler's to
 * read). Unknown routes answer 404 in the API's error shape. `calls` records every URL asked.
 */
export function fakeApi(handlers: Record<string, Handler>) {
  const calls: URL[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), "http://test.local");
    calls.push(url);
    const key = `${(init?.method ?? "GET").toUpperCase()} ${url.pathname}`;
    const handler = handlers[key];
    if (!handler) {
      return new Response(JSON.stringify({ error: { code: "not_found", message: `no route ${key}` } }), { status: 404 });
    }
    const body = await handler(url, init);
    if (body instanceof Response) return body;
    return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
  });
  vi.stubGlobal("fetch", fetch);
  return { fetch, calls };
}
