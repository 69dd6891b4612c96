/**
 * HLS sources (`.m3u8`): played through hls.js (Media Source Extensions) wherever MSE exists,
 * which is every desktop browser (Chromium has no native HLS, or only recently); Safari on
 * iPhone, which has native HLS but no MSE, gets the playlist as the element's `src`.
 * hls.js is loaded on demand: pages without an HLS video never download it.
 * The tracker is untouched: it watches the `<video>` element whatever feeds it.
 */

export function isHls(url: string | null | undefined): boolean {
  return !!url && /\.m3u8(\?|#|$)/i.test(url);
}

export interface HlsAttachment {
  /** "hls.js", "native" or "none" (the browser cannot play HLS at all). */
  engine: Promise<"hls.js" | "native" | "none">;
  detach: () => void;
}

export function attachHls(
  video: HTMLVideoElement,
  url: string,
  onFatal: (message: string) => void,
  load: () => Promise<typeof import("hls.js")> = () => import("hls.js"),
): HlsAttachment {
  let detached = false;
  let destroy: (() => void) | null = null;
  const engine = load().then(({ default: Hls }) => {
    if (detached) return "none" as const;
    if (Hls.isSupported()) {
      const hls = new Hls({ enableWorker: true });
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) onFatal(`The video stream failed (${data.details}).`);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      destroy = () => hls.destroy();
      video.dataset.engine = "hls.js";
      return "hls.js" as const;
    }
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
      video.dataset.engine = "native";
      return "native" as const;
    }
    onFatal("This browser cannot play this video stream (HLS).");
    return "none" as const;
  });
  return {
    engine,
    detach() {
      detached = true;
      destroy?.();
    },
  };
}
