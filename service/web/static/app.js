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

function sweepForm(form) {
  // Show (and send) only the fields the chosen search strategy takes.
  const strategy = form.elements.strategy;
  function follow() {
    form.querySelectorAll("[data-strategies]").forEach((part) => {
      const on = part.dataset.strategies.split(" ").includes(strategy.value);
      part.hidden = !on;
      part.querySelectorAll("input, select").forEach((input) => { input.disabled = !on; });
    });
  }
  strategy.addEventListener("change", follow);
  follow();
  addParameterRows(form, follow);
  // A metric other than the accuracy has no default direction: until one is chosen, the
  // direction asks for it (a loss left on "maximize" would be maximised).
  const metric = form.elements.metric;
  const direction = form.elements.direction;
  let chosen = metric.value.trim() !== "accuracy";
  direction.addEventListener("change", () => { chosen = true; });
  metric.addEventListener("input", () => {
    if (!chosen) direction.value = metric.value.trim() === "accuracy" ? "maximize" : "";
  });
}

function addParameterRows(form, follow) {
  // Without JavaScript the form has three empty rows; with it, a button adds more (up to the
  // API's 16 parameters), each a copy of the last with its numbers moved on.
  const rows = form.querySelector("#param-rows");
  const button = form.querySelector("#add-param-row");
  if (!rows || !button) return;
  button.parentElement.hidden = false;
  button.addEventListener("click", () => {
    const count = rows.querySelectorAll("[data-param-row]").length;
    if (count >= 16) { button.disabled = true; return; }
    const row = rows.lastElementChild.cloneNode(true);
    const last = count - 1;
    row.dataset.paramRow = String(count);
    row.querySelectorAll("input, label").forEach((node) => {
      ["id", "name", "for"].forEach((attribute) => {
        const text = node.getAttribute(attribute);
        if (text) node.setAttribute(attribute, text.replace(`-${last}`, `-${count}`).replace(`_${last}`, `_${count}`));
      });
      if (node.tagName === "INPUT") {
        if (node.type === "checkbox") node.checked = false; else node.value = "";
        node.removeAttribute("aria-invalid");
      }
    });
    row.querySelector("label").textContent = `Parameter ${count + 1} name`;
    rows.appendChild(row);
    follow();
    row.querySelector("input").focus();
    if (count + 1 >= 16) button.disabled = true;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(followLive);
  const upload = document.getElementById("upload-form");
  if (upload) uploadWithProgress(upload);
  const sweep = document.getElementById("sweep-form");
  if (sweep) sweepForm(sweep);
});
