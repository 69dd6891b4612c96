/**
 * Windowing for long lists: which rows to render so that only the visible ones (plus a few
 * either side) exist in the DOM. Rows have a fixed height.
 */
export function visibleRange(
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  count: number,
  overscan = 5,
): [start: number, end: number] {
  if (count <= 0 || rowHeight <= 0) return [0, 0];
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const shown = Math.ceil(Math.max(0, viewportHeight) / rowHeight) + 1;
  const start = Math.max(0, Math.min(count, first - overscan));
  const end = Math.min(count, first + shown + overscan);
  return [start, Math.max(start, end)];
}
