/** 125.5 -> "2:05"; 3725 -> "1:02:05". */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** 45.456 -> "45.5%". */
export function percent(value: number): string {
  return `${(Math.round(value * 10) / 10).toFixed(1)}%`;
}

/** Watched time in words: "5 minutes watched". */
export function watchedWords(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  if (minutes === 0) return `${Math.floor(seconds)} seconds watched`;
  return `${minutes} minute${minutes === 1 ? "" : "s"} watched`;
}
