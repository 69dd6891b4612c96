export function ProgressBar({ value, label, testId }: { value: number; label: string; testId?: string }) {
  const clamped = Math.min(100, Math.max(0, value));
  return (
    <div
      className="bar"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(clamped * 10) / 10}
      data-testid={testId}
    >
      <div className="bar-fill" style={{ width: `${clamped}%` }} />
    </div>
  );
}
