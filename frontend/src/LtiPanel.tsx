import { useCallback, useEffect, useId, useMemo, useState, type FormEvent } from "react";
import {
  api,
  errorHandler,
  type LtiContext,
  type LtiGrades,
  type LtiPlatform,
  type LtiPlatformBody,
  type LtiRegistrationInvite,
} from "./api";

/** The registration form's fields, in the order an LMS's tool settings show them. */
const FIELDS = [
  { name: "platform_id", label: "Platform ID", hint: "yours to choose: letters, digits, _ . : -" },
  { name: "name", label: "Name", hint: "shown here, e.g. Canvas (Northside)" },
  { name: "issuer", label: "Issuer", hint: "the LMS's iss, e.g. https://canvas.instructure.com" },
  { name: "client_id", label: "Client ID", hint: "the id the LMS gave this tool" },
  { name: "auth_login_url", label: "Authorization URL", hint: "the LMS's OIDC auth endpoint" },
  { name: "auth_token_url", label: "Token URL", hint: "the LMS's OAuth 2 token endpoint" },
  { name: "jwks_url", label: "Key set URL", hint: "the LMS's public JWKS" },
  { name: "deployment_ids", label: "Deployment IDs", hint: "space-separated; empty: any, recorded at first launch" },
  { name: "frame_origins", label: "Frame origins", hint: "optional, space-separated, e.g. https://school.instructure.com" },
] as const;
type FieldName = (typeof FIELDS)[number]["name"];
type Draft = Record<FieldName, string>;
const EMPTY = Object.fromEntries(FIELDS.map((f) => [f.name, ""])) as Draft;
const LISTS: readonly FieldName[] = ["deployment_ids", "frame_origins"];
const words = (text: string) => text.split(/\s+/).filter(Boolean);

/** The form's draft as the API's body (the id goes in the URL). */
export function registration(draft: Draft): LtiPlatformBody {
  return {
    name: draft.name.trim(),
    issuer: draft.issuer.trim(),
    client_id: draft.client_id.trim(),
    auth_login_url: draft.auth_login_url.trim(),
    auth_token_url: draft.auth_token_url.trim(),
    jwks_url: draft.jwks_url.trim(),
    deployment_ids: words(draft.deployment_ids),
    frame_origins: words(draft.frame_origins),
  };
}

/** Every LMS context seen at a launch (a class), or "failed" when the list could not be read. */
type Classes = LtiContext[] | "failed" | null;

/**
 * The admin page's LTI panel: the registered LMS platforms with their last launch and their
 * grades and rosters health, a form to register one (or replace one, by its id) and a button
 * to remove one.
 */
export function LtiPanel({ onUnauthorized }: { onUnauthorized: () => void }) {
  const [platforms, setPlatforms] = useState<LtiPlatform[] | null>(null);
  const [classes, setClasses] = useState<Classes>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);

  const reload = useCallback(
    () => api.ltiPlatforms().then((list) => setPlatforms(list.rows), fail),
    [fail],
  );
  useEffect(() => void reload(), [reload]);
  useEffect(() => {
    let live = true;
    api.ltiContexts().then(
      (list) => live && setClasses(list.rows),
      () => live && setClasses("failed"),
    );
    return () => {
      live = false;
    };
  }, []);

  async function remove(platform: LtiPlatform) {
    setError(null);
    try {
      await api.deleteLtiPlatform(platform.platform_id);
      setStatus(`Removed ${platform.name}.`);
      await reload();
    } catch (e) {
      fail(e);
    }
  }

  return (
    <section className="lti-panel" aria-labelledby="lti-heading" data-testid="lti-panel">
      <h2 id="lti-heading">LMS platforms (LTI 1.3)</h2>
      <p role="status" className="muted">{status}</p>
      {error && <p className="error" role="alert">{error}</p>}
      {platforms === null ? (
        <p>Loading…</p>
      ) : platforms.length === 0 ? (
        <p data-testid="no-platforms">No LMS is registered yet.</p>
      ) : (
        <PlatformTable platforms={platforms} classes={classes} onRemove={(p) => void remove(p)} />
      )}
      <RegistrationLink onError={fail} />
      <RegisterForm
        existing={platforms ?? []}
        onError={(e) => {
          setStatus("");
          fail(e);
        }}
        onRegistered={(message) => {
          setError(null);
          setStatus(message);
          void reload();
        }}
      />
    </section>
  );
}

function deployments(p: LtiPlatform): string {
  if (p.deployment_ids.length > 0) return p.deployment_ids.join(", ");
  const seen = p.seen_deployment_ids.length > 0 ? ` (seen: ${p.seen_deployment_ids.join(", ")})` : " (none seen yet)";
  return `any${seen}`;
}

function PlatformTable({
  platforms,
  classes,
  onRemove,
}: {
  platforms: LtiPlatform[];
  classes: Classes;
  onRemove: (p: LtiPlatform) => void;
}) {
  const [confirming, setConfirming] = useState<string | null>(null);
  return (
    <table className="class-table" data-testid="lti-platforms">
      <caption className="visually-hidden">Registered LMS platforms</caption>
      <thead>
        <tr>
          <th scope="col">Platform</th>
          <th scope="col">Issuer and client ID</th>
          <th scope="col">Deployments</th>
          <th scope="col">Last launch</th>
          <th scope="col">Grades and rosters</th>
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {platforms.map((p) => (
          <tr key={p.platform_id} data-testid={`lti-platform-${p.platform_id}`}>
            <th scope="row">
              {p.name}
              <div className="muted">{p.platform_id}</div>
            </th>
            <td>
              {p.issuer}
              <div className="muted">{p.client_id}</div>
            </td>
            <td>{deployments(p)}</td>
            <td>
              {p.last_launch_at ? (
                <time dateTime={p.last_launch_at}>{new Date(p.last_launch_at).toLocaleString()}</time>
              ) : (
                "never"
              )}
            </td>
            <td>
              <PlatformHealth platform={p} classes={ofPlatform(classes, p.platform_id)} />
            </td>
            <td>
              {confirming === p.platform_id ? (
                <span className="dialog-actions">
                  <button className="danger" onClick={() => onRemove(p)}>{`Remove ${p.name} now`}</button>
                  <button className="secondary" onClick={() => setConfirming(null)}>Keep it</button>
                </span>
              ) : (
                <button className="secondary" aria-label={`Remove ${p.name}`} onClick={() => setConfirming(p.platform_id)}>
                  Remove
                </button>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The platform's classes: not its contexts kept before class ids named the deployment (none). */
function ofPlatform(classes: Classes, platformId: string): Classes {
  return Array.isArray(classes)
    ? classes.filter((c) => c.platform_id === platformId && c.deployment_id !== null)
    : classes;
}

/** An epoch in seconds, as an ISO 8601 `<time>`. */
function Moment({ epoch }: { epoch: number }) {
  const iso = new Date(epoch * 1000).toISOString();
  return <time dateTime={iso}>{iso}</time>;
}

/** A platform's grades (AGS) and rosters (NRPS) health; `classes` are the platform's own. */
export function PlatformHealth({ platform, classes }: { platform: LtiPlatform; classes: Classes }) {
  return (
    <div data-testid={`lti-health-${platform.platform_id}`}>
      <GradesHealth platformId={platform.platform_id} />
      <RosterHealth classes={classes} />
    </div>
  );
}

/**
 * Grades back (GET .../grades): learners graded, those the platform refused (not sent again
 * until they launch again), its last error, and the score outbox's depth and dead letters
 * (every platform's).
 */
function GradesHealth({ platformId }: { platformId: string }) {
  const [grades, setGrades] = useState<LtiGrades | "failed" | null>(null);
  useEffect(() => {
    let live = true;
    api.ltiGrades(platformId).then(
      (g) => live && setGrades(g),
      () => live && setGrades("failed"),
    );
    return () => {
      live = false;
    };
  }, [platformId]);
  if (grades === null) return <p className="muted">Grades: …</p>;
  if (grades === "failed") return <p className="muted">Grades not available.</p>;
  const error = grades.last_error;
  return (
    <>
      <p>{`Grades: ${grades.targets} learners`}</p>
      {grades.refused.length > 0 && (
        <details>
          <summary>{`${grades.refused.length} refused by the LMS`}</summary>
          <ul>
            {grades.refused.map((r) => (
              <li key={`${r.user_id}|${r.material_id}`}>{`${r.user_id} (${r.material_id}): HTTP ${r.status ?? "-"} ${r.detail}`}</li>
            ))}
          </ul>
        </details>
      )}
      {error && (
        <p>
          {"Last error "}
          <Moment epoch={error.at} />
          {`: ${error.error}`}
        </p>
      )}
      <p className="muted">{`Scores queued ${grades.queued}, set aside ${grades.dead} (all platforms).`}</p>
    </>
  );
}

/**
 * Rosters (the platform's rows of GET /api/admin/lti/contexts): how many of its classes had a
 * complete NRPS sync, the latest one, and each class whose last sync failed, with its error
 * (kept until a sync succeeds).
 */
function RosterHealth({ classes }: { classes: Classes }) {
  if (classes === null) return <p className="muted">Rosters: …</p>;
  if (classes === "failed") return <p className="muted">Rosters not available.</p>;
  if (classes.length === 0) return <p>Rosters: no class launched yet</p>;
  const synced = classes.flatMap((c) => (c.roster_synced_at === null ? [] : [c.roster_synced_at]));
  const failing = classes.filter((c) => c.roster_error !== null);
  return (
    <>
      <p>
        {`Rosters: ${synced.length} of ${classes.length} ${classes.length === 1 ? "class" : "classes"} synced`}
        {synced.length > 0 && (
          <>
            {", last "}
            <Moment epoch={synced.reduce((a, b) => Math.max(a, b))} />
          </>
        )}
      </p>
      {failing.length > 0 && (
        <details>
          <summary>{`${failing.length} ${failing.length === 1 ? "class" : "classes"} failed the last roster sync`}</summary>
          <ul>
            {failing.map((c) => (
              <li key={`${c.deployment_id}|${c.context_id}`}>{`${c.title ?? c.context_id}: ${c.roster_error}`}</li>
            ))}
          </ul>
        </details>
      )}
    </>
  );
}

/** LTI Dynamic Registration: a link for an LMS admin to paste, used once. */
function RegistrationLink({ onError }: { onError: (e: unknown) => void }) {
  const [invite, setInvite] = useState<LtiRegistrationInvite | null>(null);
  const id = useId();
  async function create() {
    try {
      setInvite(await api.ltiRegistrationInvite());
    } catch (e) {
      onError(e);
    }
  }
  return (
    <div className="lti-register">
      <h3>Register by a link</h3>
      <p className="muted">
        Moodle 4 and Canvas can register the tool from one URL (LTI Dynamic Registration). Each link registers one LMS.
      </p>
      <button type="button" onClick={() => void create()}>
        Create a registration link
      </button>
      {invite && (
        <p className="field">
          <label htmlFor={`${id}-url`}>Registration link</label>
          <input id={`${id}-url`} readOnly value={invite.url} onFocus={(e) => e.target.select()} aria-describedby={`${id}-until`} />
          <span id={`${id}-until`} className="muted">
            usable once, until <time dateTime={invite.expires_at}>{new Date(invite.expires_at).toLocaleString()}</time>
          </span>
        </p>
      )}
    </div>
  );
}

function RegisterForm({
  existing,
  onRegistered,
  onError,
}: {
  existing: LtiPlatform[];
  onRegistered: (message: string) => void;
  onError: (e: unknown) => void;
}) {
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [busy, setBusy] = useState(false);
  const id = useId();
  const replacing = existing.some((p) => p.platform_id === draft.platform_id.trim());

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    try {
      const platformId = draft.platform_id.trim();
      const created = (await api.putLtiPlatform(platformId, registration(draft))).status === 201;
      setDraft(EMPTY);
      onRegistered(`${created ? "Registered" : "Replaced"} ${platformId}.`);
    } catch (e) {
      onError(e);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="lti-register" onSubmit={(e) => void submit(e)} aria-labelledby={`${id}-title`}>
      <h3 id={`${id}-title`}>Register a platform</h3>
      {FIELDS.map((f) => (
        <p key={f.name} className="field">
          <label htmlFor={`${id}-${f.name}`}>{f.label}</label>
          <input
            id={`${id}-${f.name}`}
            name={f.name}
            value={draft[f.name]}
            required={!LISTS.includes(f.name)}
            aria-describedby={`${id}-${f.name}-hint`}
            onChange={(e) => setDraft({ ...draft, [f.name]: e.target.value })}
          />
          <span id={`${id}-${f.name}-hint`} className="muted">
            {f.hint}
          </span>
        </p>
      ))}
      <button type="submit" disabled={busy}>
        {replacing ? "Replace platform" : "Register platform"}
      </button>
    </form>
  );
}
