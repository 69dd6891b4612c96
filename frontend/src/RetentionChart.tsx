import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Retention } from "./api";

/** The audience retention curve: x = position in the video (s), y = % of viewers. */
export function RetentionChart({ retention }: { retention: Retention }) {
  const host = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!host.current) return;
    const xs = retention.buckets.map((b) => (b.start + b.end) / 2);
    const ys = retention.buckets.map((b) => b.share * 100);
    const chart = new uPlot(
      {
        width: Math.min(720, host.current.clientWidth || 720),
        height: 260,
        scales: { x: { time: false }, y: { range: [0, 100] } },
        axes: [{ label: "position (s)" }, { label: "% of viewers" }],
        series: [{}, { label: "watched", stroke: "#2563eb", fill: "rgba(37, 99, 235, 0.15)", width: 2 }],
      },
      [xs, ys],
      host.current,
    );
    return () => chart.destroy();
  }, [retention]);

  return <div ref={host} data-testid="retention-chart" />;
}
