// The owner's share panel on the desktop page: share the running desktop with a member of its
// experiment (view only, or view and control), see who is connected, revoke a share. Everything goes
// through the session API (/api/sessions/<id>/shares) with the login cookie and the CSRF header.
const box = document.getElementById("viewer");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const url = box.dataset.sharesUrl;
const panel = document.getElementById("share-panel");
const userSelect = document.getElementById("share-user");
const modeSelect = document.getElementById("share-mode-select");
const list = document.getElementById("share-list");
const errorEl = document.getElementById("share-error");
const countEl = document.getElementById("viewer-count");

async function call(method, path, body) {
  const response = await fetch(path, {
    method, cache: "no-store",
    headers: { "X-CSRFToken": csrf, Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || "request failed: " + response.status);
  return data;
}

function render(data) {
  const chosen = userSelect.value;
  userSelect.replaceChildren(...data.members.map((name) => new Option(name, name, false, name === chosen)));
  const guests = data.viewers.filter((viewer) => viewer.share);
  countEl.textContent = guests.length ? String(guests.length) : "";
  countEl.title = guests.length ? guests.length + " guest(s) connected" : "";
  list.replaceChildren(...data.shares.map((share) => {
    const item = document.createElement("li");
    item.className = "d-flex align-items-center gap-2 py-1 share";
    item.dataset.guest = share.guest;
    item.dataset.connected = share.connected ? "yes" : "no";
    const label = document.createElement("span");
    label.textContent = share.guest + " · " + (share.mode === "view" ? "view only" : "view and control");
    const status = document.createElement("span");
    status.className = "badge " + (share.connected ? "text-bg-success" : "text-bg-secondary");
    status.textContent = share.connected ? "connected" : "not connected";
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "btn btn-sm btn-outline-warning py-0 revoke";
    revoke.textContent = "Revoke";
    revoke.addEventListener("click", async () => {
      try { await call("DELETE", url + "/" + share.id); await refresh(); } catch (err) { errorEl.textContent = err.message; }
    });
    item.append(label, status, revoke);
    return item;
  }));
  if (!data.shares.length) {
    const none = document.createElement("li");
    none.className = "text-secondary";
    none.textContent = data.members.length ? "Not shared with anyone." : "No other member of the experiment to share with.";
    list.append(none);
  }
}

async function refresh() {
  try { render(await call("GET", url)); } catch (err) { errorEl.textContent = err.message; }
}

document.getElementById("btn-share-add").addEventListener("click", async () => {
  errorEl.textContent = "";
  if (!userSelect.value) { errorEl.textContent = "Choose a member to share with."; return; }
  try { await call("POST", url, { user: userSelect.value, mode: modeSelect.value }); } catch (err) { errorEl.textContent = err.message; }
  await refresh();
});

// Who is connected: refreshed every 3 s while the panel is open, every 15 s otherwise (the badge).
let timer = null;
function poll(delay) { clearTimeout(timer); timer = setTimeout(async () => { await refresh(); poll(panelOpen() ? 3000 : 15000); }, delay); }
const panelOpen = () => panel.classList.contains("show");
panel.addEventListener("shown.bs.collapse", () => { refresh(); poll(3000); });
refresh();
poll(15000);
