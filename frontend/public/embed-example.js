// The embed example's script (embed-example.html): tracks the page's <video> with the tracker
// bundle loaded from the progress API's address, which may be another origin than the page's.
(function () {
  var form = document.getElementById("setup");
  var video = document.getElementById("lesson");
  var out = document.getElementById("progress");
  var handle = null;
  var params = new URLSearchParams(location.hash.replace(/^#/, ""));
  ["api", "token", "video", "src"].forEach(function (name) {
    if (params.get(name)) form.elements[name].value = params.get(name);
  });

  function start() {
    if (handle) handle.stop();
    handle = null;
    var apiBase = form.elements.api.value.trim().replace(/\/+$/, "");
    var token = form.elements.token.value.trim();
    var videoId = form.elements.video.value.trim();
    if (!token || !videoId) {
      out.textContent = "Enter a student token and a video id.";
      return;
    }
    if (video.getAttribute("src") !== form.elements.src.value) video.src = form.elements.src.value;
    // The ES module bundle; `<script src=".../videoprogress-tracker.iife.js">` and the global
    // VideoProgress.track do the same.
    import(apiBase + "/embed/videoprogress-tracker.js").then(
      function (tracker) {
        handle = tracker.track(video, {
          apiBase: apiBase,
          videoId: videoId,
          getToken: function () { return form.elements.token.value.trim() || null; },
          onProgress: function (reply) {
            out.textContent = "Progress " + reply.progress_percentage.toFixed(1) + "% · " +
              Math.round(reply.watched_seconds) + " s watched" + (reply.completed ? " · completed" : "");
          },
          onUnauthorized: function () { out.textContent = "The token was refused: sign in again (heartbeats are kept)."; },
          onError: function (message) { out.textContent = "Not recorded: " + message; },
        });
        out.textContent = "Tracking " + videoId + ".";
      },
      function () { out.textContent = "The tracker could not be loaded from " + (apiBase || "this origin") + "."; }
    );
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); start(); });
  if (params.get("token")) start();
})();
