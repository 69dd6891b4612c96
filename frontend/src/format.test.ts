import { describe, expect, it } from "vitest";
import { clock, percent, watchedWords } from "./format";

describe("format", () => {
  it.each([
    [0, "0:00"],
    [125.5, "2:05"],
    [3725, "1:02:05"],
    [Number.NaN, "0:00"],
  ])("clock(%s) = %s", (seconds, expected) => {
    expect(clock(seconds)).toBe(expected);
  });

  it("rounds percentages to one decimal", () => {
    expect(percent(45.456)).toBe("45.5%");
    expect(percent(100)).toBe("100.0%");
  });

  it("says how much was watched", () => {
    expect(watchedWords(42)).toBe("42 seconds watched");
    expect(watchedWords(61)).toBe("1 minute watched");
    expect(watchedWords(300)).toBe("5 minutes watched");
  });
});
