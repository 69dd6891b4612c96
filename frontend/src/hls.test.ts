import { describe, expect, it, vi } from "vitest";
import { attachHls, isHls } from "./hls";

function fakeHls(supported: boolean) {
  const instance = { loadSource: vi.fn(), attachMedia: vi.fn(), destroy: vi.fn(), on: vi.fn() };
  const Hls = Object.assign(
    vi.fn(function () {
      return instance;
    }),
    { isSupported: () => supported, Events: { ERROR: "hlsError" } },
  );
  return { instance, load: async () => ({ default: Hls }) as unknown as typeof import("hls.js") };
}

function fakeVideo(native: string) {
  return { dataset: {} as Record<string, string>, src: "", canPlayType: vi.fn(() => native) } as unknown as HTMLVideoElement;
}

describe("isHls", () => {
  it("knows a playlist by its extension, query or not", () => {
    expect(isHls("/media/hls/demo.m3u8")).toBe(true);
    expect(isHls("https://cdn.example/x.M3U8?token=1")).toBe(true);
    expect(isHls("/media/demo.webm")).toBe(false);
    expect(isHls("/m3u8/video.mp4")).toBe(false);
    expect(isHls(null)).toBe(false);
  });
});

describe("attachHls", () => {
  it("uses hls.js where Media Source Extensions exist, even beside native HLS", async () => {
    const { instance, load } = fakeHls(true);
    const video = fakeVideo("maybe");
    const a = attachHls(video, "/media/hls/demo.m3u8", () => {}, load);
    expect(await a.engine).toBe("hls.js");
    expect(instance.loadSource).toHaveBeenCalledWith("/media/hls/demo.m3u8");
    expect(instance.attachMedia).toHaveBeenCalledWith(video);
    expect(video.src).toBe("");
    a.detach();
    expect(instance.destroy).toHaveBeenCalledOnce();
  });

  it("falls back to native HLS without MSE, and reports a browser that has neither", async () => {
    const native = fakeVideo("maybe");
    expect(await attachHls(native, "/a.m3u8", () => {}, fakeHls(false).load).engine).toBe("native");
    expect(native.src).toBe("/a.m3u8");
    const onFatal = vi.fn();
    expect(await attachHls(fakeVideo(""), "/a.m3u8", onFatal, fakeHls(false).load).engine).toBe("none");
    expect(onFatal).toHaveBeenCalledOnce();
  });

  it("does nothing when the player closed before hls.js arrived", async () => {
    const { instance, load } = fakeHls(true);
    const a = attachHls(fakeVideo(""), "/a.m3u8", () => {}, load);
    a.detach();
    expect(await a.engine).toBe("none");
    expect(instance.loadSource).not.toHaveBeenCalled();
  });
});
