// The Files panel of the desktop page: the desktop's home (and its read-only /data) through the files API
// (/api/sessions/<id>/files/...): browse folders, download files (a folder as a zip), upload with the
// button or by dropping files onto the desktop, delete. Every transfer shows a progress bar with bytes
// done of total and speed, and can be cancelled. Uploads go to the folder the panel shows.
const panel = document.getElementById("files-panel");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const stage = document.getElementById("stage");
const rootSelect = document.getElementById("files-root");
const pathEl = document.getElementById("files-path");
const list = document.getElementById("files-list");
const transfers = document.getElementById("files-transfers");
const errorEl = document.getElementById("files-error");
const uploadInput = document.getElementById("files-upload");
const mayWrite = panel.dataset.mayWrite === "yes";
let folder = "";  // the folder shown, relative to the root, no leading or trailing "/"

const rootUrl = () => (rootSelect.value === "data" ? panel.dataset.dataUrl : panel.dataset.filesUrl);
const encodePath = (path) => path.split("/").map(encodeURIComponent).join("/");
const join = (a, b) => (a ? a + "/" + b : b);
const MiB = 1024 * 1024;

function human(bytes) {
  if (bytes >= 1024 * MiB) return (bytes / 1024 / MiB).toFixed(2) + " GiB";
  if (bytes >= MiB) return (bytes / MiB).toFixed(1) + " MiB";
  if (bytes >= 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return bytes + " B";
}

function showError(message) { errorEl.textContent = message || ""; }

async function errorOf(response) {
  const body = await response.json().catch(() => ({}));
  return body.error || "request failed: " + response.status;
}

async function refresh() {
  pathEl.textContent = "/" + folder;
  pathEl.dataset.path = folder;
  stage.dataset.dropTarget = "~/" + folder;
  const response = await fetch(rootUrl() + "/" + (folder ? encodePath(folder) + "/" : ""),
    { cache: "no-store", headers: { Accept: "application/json" } });
  if (!response.ok) { showError(await errorOf(response)); list.replaceChildren(); return; }
  showError("");
  const data = await response.json();
  const rows = data.entries.sort((a, b) => (a.type === "dir") === (b.type === "dir") ? a.name.localeCompare(b.name)
    : (a.type === "dir" ? -1 : 1)).map(row);
  if (!rows.length) {
    const none = document.createElement("li");
    none.className = "text-secondary";
    none.textContent = "This folder is empty.";
    rows.push(none);
  }
  list.replaceChildren(...rows);
}

function button(label, title, onClick, style = "btn-outline-light") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "btn btn-sm py-0 " + style;
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function row(entry) {
  const item = document.createElement("li");
  item.className = "d-flex align-items-center gap-2 py-1 border-bottom border-secondary file-entry";
  item.dataset.name = entry.name;
  item.dataset.type = entry.type;
  const path = join(folder, entry.name);
  const url = rootUrl() + "/" + encodePath(path);
  const name = document.createElement("a");
  name.className = "name link-light flex-grow-1";
  name.textContent = entry.type === "dir" ? entry.name + "/" : entry.name;
  const meta = document.createElement("span");
  meta.className = "text-secondary text-nowrap";
  meta.textContent = entry.type === "dir" ? "folder" : human(entry.size);
  item.append(name, meta);
  if (entry.type === "dir") {
    name.href = "#";
    name.addEventListener("click", (event) => { event.preventDefault(); folder = path; refresh(); });
    const zip = url + "?archive=zip";
    item.append(button("zip", "Download the folder as a zip", () => download(zip, entry.name + ".zip", 0)));
  } else {
    name.href = url;  // a plain link too: "save link as" and middle-click work
    name.setAttribute("download", entry.name);
    name.addEventListener("click", (event) => { event.preventDefault(); download(url, entry.name, entry.size); });
    if (mayWrite && rootSelect.value === "files") {
      item.append(button("Delete", "Delete " + entry.name, async () => {
        if (!confirm("Delete " + path + "?")) return;
        const response = await fetch(url, { method: "DELETE", headers: { "X-CSRFToken": csrf } });
        if (!response.ok) showError(await errorOf(response));
        refresh();
      }, "btn-outline-warning"));
    }
  }
  return item;
}

// ------------------------------------------------------------------ transfers with progress
function transferRow(kind, name, cancel) {
  const item = document.createElement("li");
  item.className = "d-flex flex-wrap align-items-center gap-2 py-1 transfer";
  item.dataset.kind = kind;
  item.dataset.name = name;
  item.dataset.state = "running";
  const label = document.createElement("span");
  label.className = "name text-truncate";
  label.style.maxWidth = "14rem";
  label.textContent = (kind === "upload" ? "\u2191 " : "\u2193 ") + name;
  const bar = document.createElement("progress");
  bar.max = 1; bar.value = 0;
  const text = document.createElement("span");
  text.className = "text-secondary text-nowrap progress-text";
  const stop = button("Cancel", "Cancel this transfer", () => cancel(), "btn-outline-warning");
  item.append(label, bar, text, stop);
  transfers.prepend(item);
  const started = performance.now();
  return {
    item,
    update(done, total) {
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      bar.max = total || Math.max(done, 1);
      bar.value = done;
      item.dataset.done = String(done);
      item.dataset.total = String(total || 0);
      text.textContent = human(done) + (total ? " of " + human(total) : "") + " \u00b7 " + human(done / seconds) + "/s";
    },
    finish(state, message) {
      item.dataset.state = state;
      stop.remove();
      // done: the last figures stay (bytes of total, speed); otherwise why it stopped
      text.textContent = state === "done" ? text.textContent + " \u00b7 done" : (message || state);
      setTimeout(() => item.remove(), state === "done" ? 8000 : 20000);
    },
  };
}

async function download(url, name, size) {
  const controller = new AbortController();
  const progress = transferRow("download", name, () => controller.abort());
  try {
    const response = await fetch(url, { signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw new Error(await errorOf(response));
    const total = Number(response.headers.get("Content-Length")) || size || 0;
    const reader = response.body.getReader();
    const parts = [];
    let done = 0;
    progress.update(0, total);
    for (;;) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      parts.push(value);
      done += value.length;
      progress.update(done, total);
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob(parts));
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    progress.update(done, total || done);
    progress.finish("done");
  } catch (err) {
    progress.finish(controller.signal.aborted ? "cancelled" : "failed", controller.signal.aborted ? "cancelled" : err.message);
  }
}

function upload(file, target, overwrite = false) {
  const url = panel.dataset.filesUrl + "/" + encodePath(join(target, file.name)) + (overwrite ? "?overwrite=1" : "");
  const xhr = new XMLHttpRequest();
  const progress = transferRow("upload", file.name, () => xhr.abort());
  progress.update(0, file.size);
  xhr.upload.addEventListener("progress", (event) => progress.update(event.loaded, event.total || file.size));
  xhr.addEventListener("load", () => {
    if (xhr.status === 201) {
      progress.update(file.size, file.size);
      progress.finish("done");
      if (rootSelect.value === "files" && folder === target) refresh();
      return;
    }
    let message = "upload failed: " + xhr.status;
    try { message = JSON.parse(xhr.responseText).error || message; } catch { /* not JSON */ }
    if (xhr.status === 409 && !overwrite && confirm(file.name + " exists in ~/" + target + ". Replace it?")) {
      progress.finish("replaced", "replacing\u2026");
      upload(file, target, true);
      return;
    }
    progress.finish("failed", message);
  });
  xhr.addEventListener("error", () => progress.finish("failed", "the connection failed"));
  xhr.addEventListener("abort", () => progress.finish("cancelled", "cancelled"));
  xhr.open("PUT", url);
  xhr.setRequestHeader("X-CSRFToken", csrf);
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.send(file);
}

function uploadAll(files) {
  const target = rootSelect.value === "files" ? folder : "";
  for (const file of files) upload(file, target);
}

// ------------------------------------------------------------------ wiring
document.getElementById("files-up").addEventListener("click", () => {
  folder = folder.includes("/") ? folder.slice(0, folder.lastIndexOf("/")) : "";
  refresh();
});
document.getElementById("files-refresh").addEventListener("click", refresh);
rootSelect.addEventListener("change", () => { folder = ""; refresh(); });
panel.addEventListener("shown.bs.collapse", refresh);
// On a phone the toolbar is a menu: opening the panel closes it, so the panel is not hidden behind it.
panel.addEventListener("show.bs.collapse", () => {
  const menu = document.getElementById("toolbar-menu");
  if (menu?.classList.contains("show") && document.getElementById("btn-menu")?.offsetParent) {
    window.bootstrap?.Collapse.getOrCreateInstance(menu, { toggle: false }).hide();
  }
});
if (uploadInput) {
  uploadInput.addEventListener("change", () => { uploadAll(uploadInput.files); uploadInput.value = ""; });
}

const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
if (mayWrite) {
  let depth = 0;
  stage.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    stage.classList.add("files-drop");
  }, true);
  stage.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  }, true);
  stage.addEventListener("dragleave", () => {
    depth = Math.max(depth - 1, 0);
    if (!depth) stage.classList.remove("files-drop");
  }, true);
  stage.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.stopPropagation();
    depth = 0;
    stage.classList.remove("files-drop");
    if (rootSelect.value !== "files") { rootSelect.value = "files"; folder = ""; }
    window.bootstrap?.Collapse.getOrCreateInstance(panel, { toggle: false }).show();
    uploadAll(event.dataTransfer.files);
  }, true);
}
stage.dataset.dropTarget = "~/";
