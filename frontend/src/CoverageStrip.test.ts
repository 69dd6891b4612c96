import { describe, expect, it } from "vitest";
import { coverageWords, mergeRanges } from "./CoverageStrip";
import { visibleRange } from "./virtual";

describe("mergeRanges", () => {
  it("clamps to the video, drops empty ranges, sorts and merges overlaps", () => {
    expect(mergeRanges([[50, 70], [-5, 10], [10, 20], [65, 200], [30, 30]], 100)).toEqual([
      [0, 20],
      [50, 100],
    ]);
    expect(mergeRanges([], 100)).toEqual([]);
  });
  it("says it in words", () => {
    expect(coverageWords([[0, 20], [50, 100]], 100)).toBe("Watched 0:00–0:20, 0:50–1:40 of 1:40");
    expect(coverageWords([], 60)).toBe("Nothing watched of 1:00");
  });
});

describe("visibleRange", () => {
  it("renders the rows in view plus the overscan, within the list", () => {
    expect(visibleRange(0, 100, 10, 1000, 2)).toEqual([0, 13]);
    expect(visibleRange(500, 100, 10, 1000, 2)).toEqual([48, 63]);
    expect(visibleRange(99_999, 100, 10, 1000, 2)).toEqual([1000, 1000]);
    expect(visibleRange(9_950, 100, 10, 1000, 2)).toEqual([993, 1000]);
    expect(visibleRange(0, 100, 10, 0)).toEqual([0, 0]);
  });
});
