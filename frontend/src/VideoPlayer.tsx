import { useEffect, useRef, useState } from "react";
import { session, type HeartbeatAccepted, type Material } from "./api";
import { clock, percent } from "./format";
import { attachHls, isHls } from "./hls";
import { ProgressBar } from "./ProgressBar";
import { WatchTracker } from "./tracker/tracker";

interface Props {
  material: Material;
  initialWatchTime: number;
  initialProgress: number;
  initialCompleted: boolean;
  /** The player closed; `lastHeartbeat` settles once the server answered for where it stopped. */
  onClose: (lastHeartbeat: Promise<void>) => void;
  onUnauthorized: () => void;
}

/** A modal player: resumes once where the student stopped, reports watching, shows progress. */
export function VideoPlayer({ material, initialWatchTime, initialProgress, initialCompleted, onClose, onUnauthorized }: Props) {
  const videoRef = useRef<HTMLVideoElement>(null);
  const resumed = useRef(false);
  const trackerRef = useRef<WatchTracker | null>(null);
  const [position, setPosition] = useState(initialWatchTime);
  const [duration, setDuration] = useState(material.duration ?? 0);
  const [server, setServer] = useState<Pick<HeartbeatAccepted, "progress_percentage" | "completed">>({
    progress_percentage: initialProgress,
    completed: initialCompleted,
  });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const video = videoRef.current;
    if (!video) return;
    const tracker = new WatchTracker({
      video,
      materialId: material.material_id,
      getToken: session.token,
      events: window,
      visibility: document,
      onProgress: (reply) => setServer(reply),
      onUnauthorized,
      onError: (message) => setError(message),
    });
    tracker.start();
    trackerRef.current = tracker;
    return () => void tracker.stop();
    // The tracker lives as long as this material is open, whatever re-renders happen.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [material.material_id]);

  // An HLS playlist is fed to the element by hls.js (or natively); anything else is its src.
  const hls = isHls(material.url);
  useEffect(() => {
    const video = videoRef.current;
    if (!video || !hls || !material.url) return;
    const attachment = attachHls(video, material.url, setError);
    return () => attachment.detach();
  }, [hls, material.url]);

  function onLoadedMetadata() {
    const video = videoRef.current;
    if (!video) return;
    setDuration(video.duration);
    if (!resumed.current) {
      resumed.current = true; // once: never again on a re-render or a seek
      if (initialWatchTime > 0 && initialWatchTime < video.duration - 1) video.currentTime = initialWatchTime;
    }
  }

  return (
    <div className="modal-backdrop" role="dialog" aria-label={material.title}>
      <div className="modal">
        <div className="modal-header">
          <h2>{material.title}</h2>
          <button className="close" onClick={() => onClose(trackerRef.current?.stop() ?? Promise.resolve())} aria-label="Close player">
            ×
          </button>
        </div>
        <video
          ref={videoRef}
          src={hls ? undefined : (material.url ?? undefined)}
          controls
          preload="metadata"
          data-testid="video"
          onLoadedMetadata={onLoadedMetadata}
          onTimeUpdate={() => setPosition(videoRef.current?.currentTime ?? 0)}
        />
        <div className="player-panel" data-testid="player-panel">
          <div className="player-line">
            <span data-testid="player-progress">Progress: {percent(server.progress_percentage)}</span>
            {server.completed && <span className="done" data-testid="player-completed">✓ Completed</span>}
            <span className="time" data-testid="player-time">
              {clock(position)} / {clock(duration)}
            </span>
          </div>
          <ProgressBar value={duration ? (position / duration) * 100 : 0} label="Playback position" />
          {error && <p className="error">{error}</p>}
        </div>
      </div>
    </div>
  );
}
