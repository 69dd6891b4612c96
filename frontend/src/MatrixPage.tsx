import { useEffect, useMemo, useRef, useState } from "react";
import { api, errorHandler, type ProgressMatrix } from "./api";
import { saveBlob } from "./download";
import { visibleRange } from "./virtual";

export const MATRIX_PAGE_SIZE = 500;
const ROW_H = 26;
const CELL_W = 20;
const NAME_W = 150;
const VIEWPORT_H = 520;

const SORTS = [
  { value: "student_id", label: "Student id, A to Z" },
  { value: "-student_id", label: "Student id, Z to A" },
  { value: "progress", label: "Progress, lowest first" },
  { value: "-progress", label: "Progress, highest first" },
];

/** 0 % → pale, 100 % → deep blue; completed materials are green. */
export function heat(pct: number, completed: boolean): string {
  if (completed) return "#15803d";
  const p = Math.max(0, Math.min(100, pct)) / 100;
  if (p === 0) return "#f1f5f9";
  const light = 90 - p * 55; // 90 % → 35 % lightness
  return `hsl(217 80% ${light}%)`;
}

type Row = ProgressMatrix["rows"][number];

/** Who watched what: every student × every material as a heatmap, rows virtualized. */
export function MatrixPage({ courseId, onUnauthorized }: { courseId: string; onUnauthorized: () => void }) {
  const [sort, setSort] = useState("student_id");
  const [materials, setMaterials] = useState<ProgressMatrix["materials"] | null>(null);
  const [rows, setRows] = useState<Row[]>([]);
  const [complete, setComplete] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const scroller = useRef<HTMLDivElement>(null);
  const fail = useMemo(() => errorHandler(onUnauthorized, setError), [onUnauthorized]);

  // Every page, one after the other: the first is shown at once, the rest join as they come.
  useEffect(() => {
    let cancelled = false;
    setRows([]);
    setComplete(false);
    setError(null);
    (async () => {
      let cursor: string | null = null;
      do {
        const page: ProgressMatrix = await api.matrix(courseId, { sort, limit: MATRIX_PAGE_SIZE, cursor });
        if (cancelled) return;
        setMaterials(page.materials);
        const first = cursor === null; // read now: `cursor` moves on before React applies this
        setRows((current) => (first ? page.rows : [...current, ...page.rows]));
        cursor = page.next_cursor ?? null;
      } while (cursor);
      setComplete(true);
    })().catch((e) => {
      if (!cancelled) fail(e);
    });
    return () => {
      cancelled = true;
    };
  }, [courseId, sort, fail]);

  async function downloadCsv() {
    try {
      saveBlob(await api.matrixCsv(courseId, sort), `${courseId}-matrix.csv`);
    } catch (e) {
      fail(e);
    }
  }

  const [start, end] = visibleRange(scrollTop, VIEWPORT_H, ROW_H, rows.length, 8);
  const width = NAME_W + (materials?.length ?? 0) * CELL_W;

  return (
    <main className="matrix-page">
      <p>
        <a href="#/">← My classes</a> · <a href={`#/teacher/${encodeURIComponent(courseId)}`}>Class table</a>
      </p>
      <h1>Who watched what</h1>
      <div className="toolbar">
        <label>
          Sort by{" "}
          <select value={sort} onChange={(e) => setSort(e.target.value)} data-testid="matrix-sort">
            {SORTS.map((s) => (
              <option key={s.value} value={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </label>
        <button onClick={() => void downloadCsv()}>Download CSV</button>
      </div>
      <p className="muted" aria-live="polite" data-testid="matrix-count">
        {rows.length} student{rows.length === 1 ? "" : "s"}
        {complete ? "" : " so far, loading…"} × {materials?.length ?? 0} materials
      </p>
      <Legend />
      {error && <p className="error" role="alert">{error}</p>}
      {materials && (
        <div
          className="matrix-scroll"
          ref={scroller}
          style={{ height: VIEWPORT_H }}
          onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
          tabIndex={0}
          role="region"
          aria-label="Progress matrix, scrollable"
          data-testid="matrix"
        >
          <div
            role="table"
            aria-label="Progress of each student on each material"
            aria-rowcount={rows.length + 1}
            aria-colcount={materials.length + 1}
            style={{ width }}
          >
            <div role="rowgroup" className="matrix-head">
              <div role="row" aria-rowindex={1} className="matrix-row" style={{ height: ROW_H }}>
                <div role="columnheader" className="matrix-name" style={{ width: NAME_W }}>
                  Student
                </div>
                {materials.map((m, i) => (
                  <div role="columnheader" key={m.material_id} className="matrix-col" style={{ width: CELL_W }} title={m.title}>
                    <span aria-hidden="true">{i + 1}</span>
                    <span className="visually-hidden">{m.title}</span>
                  </div>
                ))}
              </div>
            </div>
            <div role="rowgroup" style={{ height: rows.length * ROW_H, position: "relative" }} data-testid="matrix-body">
              {rows.slice(start, end).map((row, k) => {
                const index = start + k;
                return (
                  <div
                    role="row"
                    key={row.student_id}
                    aria-rowindex={index + 2}
                    className="matrix-row"
                    data-testid={`matrix-row-${row.student_id}`}
                    style={{ position: "absolute", top: index * ROW_H, height: ROW_H, width }}
                  >
                    <div role="rowheader" className="matrix-name" style={{ width: NAME_W }}>
                      <a href={`#/teacher/${encodeURIComponent(courseId)}/student/${encodeURIComponent(row.student_id)}`}>
                        {row.name ?? row.student_id}
                      </a>
                    </div>
                    {materials.map((m, j) => {
                      const pct = row.progress[j] ?? 0;
                      const done = row.completed[j] ?? false;
                      const text = `${m.title}: ${Math.round(pct)}%${done ? ", completed" : ""}`;
                      return (
                        <div
                          role="cell"
                          key={m.material_id}
                          className="matrix-cell"
                          style={{ width: CELL_W, background: heat(pct, done) }}
                          title={text}
                          aria-label={text}
                        />
                      );
                    })}
                  </div>
                );
              })}
            </div>
          </div>
        </div>
      )}
      {materials && (
        <ol className="matrix-key" aria-label="Materials by column number">
          {materials.map((m) => (
            <li key={m.material_id}>{m.title}</li>
          ))}
        </ol>
      )}
    </main>
  );
}

function Legend() {
  const steps: [string, string][] = [
    ["not started", heat(0, false)],
    ["25%", heat(25, false)],
    ["50%", heat(50, false)],
    ["75%", heat(75, false)],
    ["completed", heat(100, true)],
  ];
  return (
    <ul className="legend" aria-label="Colour key">
      {steps.map(([label, color]) => (
        <li key={label}>
          <span className="swatch" style={{ background: color }} aria-hidden="true" /> {label}
        </li>
      ))}
    </ul>
  );
}
