import { clock } from "./format";

export type Span = [number, number];

/** Ranges clamped to [0, duration], sorted and merged (touching ranges join). */
export function mergeRanges(ranges: readonly Span[], duration: number): Span[] {
  const clamped = ranges
    .map(([a, b]) => [Math.max(0, Math.min(a, duration)), Math.max(0, Math.min(b, duration))] as Span)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  const merged: Span[] = [];
  for (const [a, b] of clamped) {
    const last = merged[merged.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else merged.push([a, b]);
  }
  return merged;
}

export function coverageWords(merged: readonly Span[], duration: number): string {
  if (merged.length === 0) return `Nothing watched of ${clock(duration)}`;
  const parts = merged.map(([a, b]) => `${clock(a)}–${clock(b)}`).join(", ");
  return `Watched ${parts} of ${clock(duration)}`;
}

/** Which parts of a video a student played: a strip the length of the video, played parts filled. */
export function CoverageStrip({ ranges, duration, label }: { ranges: readonly Span[]; duration: number; label: string }) {
  const merged = duration > 0 ? mergeRanges(ranges, duration) : [];
  const words = coverageWords(merged, duration);
  return (
    <div className="coverage" role="img" aria-label={`${label}: ${words}`} title={words}>
      {merged.map(([a, b]) => (
        <div
          key={`${a}-${b}`}
          className="coverage-fill"
          data-testid="coverage-range"
          style={{ left: `${(a / duration) * 100}%`, width: `${((b - a) / duration) * 100}%` }}
        />
      ))}
    </div>
  );
}
