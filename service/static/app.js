// sweeplab dashboard: live updates and the upload progress bar. Plain JavaScript, no build step;
// every page works without it (forms post, pages reload).
"use strict";

const POLL_MS = 1500;

function followLive(container) {
  // Poll the page's live fragment and swap it in, until the fragment says it is final.
  const url = container.dataset.live;
  const follow = container.dataset.follow;
  async function tick() {
    const root = container.firstElementChild;
    if (root && root.dataset.final === "true") return;
    try {
      const log = follow ? document.getElementById(follow) : null;
      const atBottom = log && log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.ok) {
        container.innerHTML = await response.text();
        const fresh = follow ? document.getElementById(follow) : null;
        if (fresh && atBottom) fresh.scrollTop = fresh.scrollHeight;
      }
    } catch (error) {
      // The server may be restarting: try again at the next tick.
    }
    setTimeout(tick, POLL_MS);
  }
  setTimeout(tick, POLL_MS);
}

function uploadWithProgress(form) {
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    request.upload.addEventListener("progress", (progress) => {
      if (progress.lengthComputable) bar.value = Math.round(100 * progress.loaded / progress.total);
    });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (error) { body = {}; }
      if (request.status === 201) {
        bar.value = 100;
        status.textContent = `${body.added} image(s) added, ${body.duplicates} already there, ` +
          `${body.rejected.length} refused. Reloading…`;
        setTimeout(() => window.location.reload(), 600);
      } else {
        status.textContent = (body.error && body.error.message) || `Upload failed (${request.status})`;
      }
    });
    request.addEventListener("error", () => { status.textContent = "Upload failed: no connection"; });
    request.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(followLive);
  const upload = document.getElementById("upload-form");
  if (upload) uploadWithProgress(upload);
});
