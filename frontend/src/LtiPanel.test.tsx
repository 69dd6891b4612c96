// @vitest-environment happy-dom
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import axe from "axe-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { LtiContext, LtiPlatform } from "./api";
import { LtiPanel } from "./LtiPanel";
import { fakeApi } from "./test/fakeApi";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const CANVAS: LtiPlatform = {
  platform_id: "canvas-north",
  name: "Canvas North",
  issuer: "https://canvas.instructure.com",
  client_id: "10000000000042",
  auth_login_url: "https://sso.canvaslms.com/api/lti/authorize_redirect",
  auth_token_url: "https://sso.canvaslms.com/login/oauth2/token",
  jwks_url: "https://sso.canvaslms.com/api/lti/security/jwks",
  deployment_ids: [],
  frame_origins: [],
  last_launch_at: "2026-12-06T09:30:00Z",
  seen_deployment_ids: ["7:8865aa05"],
};
const MOODLE: LtiPlatform = {
  ...CANVAS,
  platform_id: "moodle",
  name: "Moodle",
  issuer: "https://moodle.school.test",
  client_id: "aW9zZ3",
  deployment_ids: ["1"],
  last_launch_at: null,
  seen_deployment_ids: [],
};

const CLASS = { deployment_id: "1", course_id: "c-phys", roster_synced_at: null, roster_error: null };
/** Canvas's classes: one synced, one synced before its last sync failed, one never synced. */
const CONTEXTS: LtiContext[] = [
  { ...CLASS, platform_id: "canvas-north", context_id: "k-1", title: "Physics", roster_synced_at: 1765013400 },
  {
    ...CLASS,
    platform_id: "canvas-north",
    context_id: "k-2",
    title: "Optics",
    roster_synced_at: 1765017000,
    roster_error: "roster page 2: HTTP 500",
  },
  { ...CLASS, platform_id: "canvas-north", context_id: "k-3", title: null, roster_error: "token: HTTP 401" },
  // a context kept before class ids named the deployment: no class any more, counted nowhere
  { ...CLASS, deployment_id: null, platform_id: "canvas-north", context_id: "k-1", title: "Old", roster_error: "x" },
  // another platform's class (removed since): counted for no listed platform
  { ...CLASS, platform_id: "d2l-old", context_id: "k-1", title: "Physics", roster_synced_at: 1765020600 },
];
const CANVAS_ROSTERS =
  "Rosters: 2 of 3 classes synced, last 2025-12-06T10:30:00.000Z" +
  "2 classes failed the last roster syncOptics: roster page 2: HTTP 500k-3: token: HTTP 401";

/** The platform list the fake API holds, changed by PUT and DELETE as the service would. */
function platformsApi(initial: LtiPlatform[]) {
  let rows = [...initial];
  const bodies: unknown[] = [];
  const fake = fakeApi({
    "GET /api/admin/lti/contexts": () => ({ rows: CONTEXTS }),
    "POST /api/admin/lti/registration-invites": () => ({ url: "https://t.test/lti/register?invite=x", expires_at: "2026-12-13T18:00:00Z" }),
    "GET /api/admin/lti/platforms": () => ({ rows }),
    "GET /api/admin/lti/platforms/canvas-north/grades": () => ({
      platform_id: "canvas-north",
      targets: 12,
      refused: [{ user_id: "lti-abc", material_id: "v-100", status: 422, detail: "not gradable", at: 1765013400 }],
      last_error: { at: 1765013400, error: "score: HTTP 503 down" },
      queued: 4,
      dead: 1,
    }),
    "GET /api/admin/lti/platforms/moodle/grades": () => ({
      platform_id: "moodle",
      targets: 0,
      refused: [],
      last_error: null,
      queued: 4,
      dead: 1,
    }),
    [`DELETE /api/admin/lti/platforms/${CANVAS.platform_id}`]: () => {
      rows = rows.filter((p) => p.platform_id !== CANVAS.platform_id);
      return new Response(null, { status: 204 });
    },
    "PUT /api/admin/lti/platforms/d2l%3Asouth": (_url, init) => {
      const body = JSON.parse(String(init?.body));
      bodies.push(body);
      const row = { ...body, platform_id: "d2l:south", last_launch_at: null, seen_deployment_ids: [] };
      rows = [...rows, row];
      return new Response(JSON.stringify(row), { status: 201 });
    },
  });
  return { ...fake, bodies };
}

function fill(label: string, value: string) {
  fireEvent.change(screen.getByLabelText(label), { target: { value } });
}

/** Every required field, with plausible values. */
function fillAll(platformId: string) {
  fill("Platform ID", platformId);
  fill("Name", "An LMS");
  fill("Issuer", "https://lms.example");
  fill("Client ID", "c-1");
  fill("Authorization URL", "https://lms.example/auth");
  fill("Token URL", "https://lms.example/token");
  fill("Key set URL", "https://lms.example/jwks");
}

describe("LtiPanel", () => {
  it("lists each platform with its deployments, last launch, grades back and rosters", async () => {
    platformsApi([CANVAS, MOODLE]);
    render(<LtiPanel onUnauthorized={() => {}} />);
    const canvas = await screen.findByTestId("lti-platform-canvas-north");
    const cells = within(canvas).getAllByRole("cell");
    expect(within(canvas).getByRole("rowheader").textContent).toBe("Canvas Northcanvas-north");
    expect(cells[0].textContent).toBe("https://canvas.instructure.com10000000000042");
    expect(cells[1].textContent).toBe("any (seen: 7:8865aa05)");
    expect(cells[2].querySelector("time")?.getAttribute("datetime")).toBe("2026-12-06T09:30:00Z");
    await within(canvas).findByText("Grades: 12 learners");
    await within(canvas).findByText(/^Rosters: 2 of 3/);
    expect(cells[3].textContent).toBe(
      "Grades: 12 learners1 refused by the LMSlti-abc (v-100): HTTP 422 not gradable" +
        "Last error 2025-12-06T09:30:00.000Z: score: HTTP 503 down" +
        "Scores queued 4, set aside 1 (all platforms)." +
        CANVAS_ROSTERS,
    );
    const moodle = within(screen.getByTestId("lti-platform-moodle")).getAllByRole("cell");
    expect(moodle[1].textContent).toBe("1");
    expect(moodle[2].textContent).toBe("never");
    await waitFor(() =>
      expect(moodle[3].textContent).toBe(
        "Grades: 0 learnersScores queued 4, set aside 1 (all platforms).Rosters: no class launched yet",
      ),
    );
    expect(screen.getByRole("region", { name: "LMS platforms (LTI 1.3)" })).toBeTruthy();
  });

  it("shows each platform's rosters from its classes, and passes axe-core with the failures open", async () => {
    platformsApi([CANVAS, MOODLE]);
    const { container } = render(<main><LtiPanel onUnauthorized={() => {}} /></main>);
    const health = await screen.findByTestId("lti-health-canvas-north");
    const line = await within(health).findByText(/^Rosters: /);
    expect(line.textContent).toBe("Rosters: 2 of 3 classes synced, last 2025-12-06T10:30:00.000Z");
    expect(line.querySelector("time")?.getAttribute("datetime")).toBe("2025-12-06T10:30:00.000Z");
    const failures = within(health).getByText("2 classes failed the last roster sync").closest("details");
    expect(failures).toBeTruthy();
    fireEvent.click(within(failures as HTMLElement).getByText("2 classes failed the last roster sync"));
    expect(within(failures as HTMLElement).getAllByRole("listitem").map((li) => li.textContent)).toEqual([
      "Optics: roster page 2: HTTP 500",
      "k-3: token: HTTP 401",
    ]);
    const moodle = await screen.findByTestId("lti-health-moodle");
    await within(moodle).findByText("Rosters: no class launched yet");
    const found = await axe.run(container, { resultTypes: ["violations"] });
    expect(found.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  });

  it("says so when the classes cannot be read, and still shows grades", async () => {
    fakeApi({
      "GET /api/admin/lti/platforms": () => ({ rows: [MOODLE] }),
      "GET /api/admin/lti/platforms/moodle/grades": () => ({
        platform_id: "moodle", targets: 3, refused: [], last_error: null, queued: 0, dead: 0,
      }),
      "GET /api/admin/lti/contexts": () =>
        new Response(JSON.stringify({ error: { code: "unavailable", message: "database down" } }), { status: 503 }),
    });
    render(<LtiPanel onUnauthorized={() => {}} />);
    const health = await screen.findByTestId("lti-health-moodle");
    await waitFor(() =>
      expect(health.textContent).toBe("Grades: 3 learnersScores queued 0, set aside 0 (all platforms).Rosters not available."),
    );
    expect(screen.queryByRole("alert")).toBeNull(); // the panel itself still works
  });

  it("registers a platform from the form's fields and lists it", async () => {
    const { bodies } = platformsApi([]);
    render(<LtiPanel onUnauthorized={() => {}} />);
    await screen.findByTestId("no-platforms");
    fill("Platform ID", " d2l:south ");
    fill("Name", "Brightspace South");
    fill("Issuer", "https://south.brightspace.test");
    fill("Client ID", "f0e1d2");
    fill("Authorization URL", "https://south.brightspace.test/d2l/lti/authenticate");
    fill("Token URL", "https://auth.brightspace.com/core/connect/token");
    fill("Key set URL", "https://south.brightspace.test/d2l/.well-known/jwks");
    fill("Deployment IDs", " dep-a  dep-b ");
    fireEvent.click(screen.getByRole("button", { name: "Register platform" }));
    await screen.findByTestId("lti-platform-d2l:south");
    expect(bodies).toEqual([
      {
        name: "Brightspace South",
        issuer: "https://south.brightspace.test",
        client_id: "f0e1d2",
        auth_login_url: "https://south.brightspace.test/d2l/lti/authenticate",
        auth_token_url: "https://auth.brightspace.com/core/connect/token",
        jwks_url: "https://south.brightspace.test/d2l/.well-known/jwks",
        deployment_ids: ["dep-a", "dep-b"],
        frame_origins: [],
      },
    ]);
    expect(screen.getByRole("status").textContent).toBe("Registered d2l:south.");
    expect((screen.getByLabelText("Platform ID") as HTMLInputElement).value).toBe(""); // a fresh form
  });

  it("names an existing id's registration a replacement", async () => {
    platformsApi([CANVAS]);
    render(<LtiPanel onUnauthorized={() => {}} />);
    await screen.findByTestId("lti-platform-canvas-north");
    fill("Platform ID", "canvas-north");
    expect(screen.getByRole("button", { name: "Replace platform" })).toBeTruthy();
  });

  it("shows the service's refusal and keeps what was typed", async () => {
    fakeApi({
      "GET /api/admin/lti/platforms": () => ({ rows: [] }),
      "PUT /api/admin/lti/platforms/p1": () =>
        new Response(JSON.stringify({ error: { code: "invalid", message: "jwks_url: must use https (http only on loopback)" } }), { status: 422 }),
    });
    render(<LtiPanel onUnauthorized={() => {}} />);
    await screen.findByTestId("no-platforms");
    fillAll("p1");
    fill("Key set URL", "http://lms.example/jwks");
    fireEvent.click(screen.getByRole("button", { name: "Register platform" }));
    expect((await screen.findByRole("alert")).textContent).toBe("jwks_url: must use https (http only on loopback)");
    expect((screen.getByLabelText("Key set URL") as HTMLInputElement).value).toBe("http://lms.example/jwks");
  });

  it("removes a platform only once the admin confirms", async () => {
    const { calls } = platformsApi([CANVAS, MOODLE]);
    render(<LtiPanel onUnauthorized={() => {}} />);
    fireEvent.click(await screen.findByRole("button", { name: "Remove Canvas North" }));
    expect(calls.some((c) => c.pathname.endsWith("/canvas-north"))).toBe(false);
    fireEvent.click(screen.getByRole("button", { name: "Remove Canvas North now" }));
    await waitFor(() => expect(screen.queryByTestId("lti-platform-canvas-north")).toBeNull());
    expect(screen.getByTestId("lti-platform-moodle")).toBeTruthy();
    expect(screen.getByRole("status").textContent).toBe("Removed Canvas North.");
  });

  it("passes axe-core with platforms listed and a removal being confirmed", async () => {
    // happy-dom has no layout: colour contrast is the browser test's (tests/test_browser.py).
    platformsApi([CANVAS, MOODLE]);
    const { container } = render(<main><LtiPanel onUnauthorized={() => {}} /></main>);
    fireEvent.click(await screen.findByRole("button", { name: "Remove Moodle" }));
    fireEvent.click(screen.getByRole("button", { name: "Create a registration link" }));
    await screen.findByLabelText("Registration link");
    const found = await axe.run(container, { resultTypes: ["violations"] });
    expect(found.violations.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
  });

  it("makes a registration link to paste into an LMS", async () => {
    const url = "https://tool.test/lti/register?invite=abc";
    fakeApi({
      "GET /api/admin/lti/platforms": () => ({ rows: [] }),
      "POST /api/admin/lti/registration-invites": () =>
        new Response(JSON.stringify({ url, expires_at: "2026-12-13T18:00:00Z" }), { status: 201 }),
    });
    render(<LtiPanel onUnauthorized={() => {}} />);
    fireEvent.click(await screen.findByRole("button", { name: "Create a registration link" }));
    const link = (await screen.findByLabelText("Registration link")) as HTMLInputElement;
    expect(link.value).toBe(url);
    expect(link.readOnly).toBe(true);
    expect(document.querySelector("time[datetime='2026-12-13T18:00:00Z']")).toBeTruthy();
  });

  it("hands a 401 to sign-in", async () => {
    fakeApi({
      "GET /api/admin/lti/platforms": () =>
        new Response(JSON.stringify({ error: { code: "unauthenticated", message: "expired" } }), { status: 401 }),
    });
    const onUnauthorized = vi.fn();
    render(<LtiPanel onUnauthorized={onUnauthorized} />);
    await waitFor(() => expect(onUnauthorized).toHaveBeenCalledOnce());
  });
});
