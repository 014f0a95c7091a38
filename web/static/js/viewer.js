// The desktop through noVNC: connect with a short-lived token, reconnect, scale, full screen, clipboard.
const box = document.getElementById("viewer");
const screen = document.getElementById("screen");
const statusEl = document.getElementById("vnc-status");
const clipboardText = document.getElementById("clipboard-text");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const { default: RFB } = await import(box.dataset.rfbUrl);

const state = { status: "connecting", rfb: null, token: box.dataset.token, attempts: 0, scale: true, stopped: false };
window.asciViewer = state;

function setStatus(status, text) {
  state.status = status;
  statusEl.dataset.state = status;
  statusEl.textContent = text || status;
  statusEl.className = "badge text-bg-" + ({ connected: "success", connecting: "secondary", ended: "dark" }[status] || "danger");
}

async function freshToken() {
  const response = await fetch(box.dataset.tokenUrl, {
    method: "POST", headers: { "X-CSRFToken": csrf, Accept: "application/json" }, cache: "no-store",
  });
  if (response.status === 409) return null; // the session is no longer running
  if (!response.ok) throw new Error("token request failed: " + response.status);
  return (await response.json()).token;
}

function connect(token) {
  if (state.rfb) { try { state.rfb.disconnect(); } catch (e) { /* already closed */ } }
  screen.replaceChildren();
  setStatus("connecting", state.attempts ? "reconnecting…" : "connecting");
  const url = box.dataset.wsBase + "/websockify?token=" + encodeURIComponent(token);
  const rfb = new RFB(screen, url, { credentials: { password: box.dataset.password }, shared: true });
  rfb.scaleViewport = state.scale;
  rfb.resizeSession = false;
  rfb.focusOnClick = true;
  rfb.background = "#2b2b2b";
  rfb.addEventListener("connect", () => { state.attempts = 0; setStatus("connected"); rfb.focus(); });
  rfb.addEventListener("disconnect", (event) => {
    if (state.rfb !== rfb) return;
    if (state.stopped) { setStatus("ended", "session ended"); return; }
    setStatus("disconnected", event.detail.clean ? "disconnected" : "connection lost");
    scheduleReconnect();
  });
  rfb.addEventListener("credentialsrequired", () => rfb.sendCredentials({ password: box.dataset.password }));
  rfb.addEventListener("securityfailure", (event) => setStatus("failed", "refused: " + (event.detail.reason || "authentication")));
  rfb.addEventListener("clipboard", (event) => { clipboardText.value = event.detail.text; });
  state.rfb = rfb;
}

let timer = null;
function scheduleReconnect() {
  if (timer || state.attempts >= 8) {
    if (state.attempts >= 8) setStatus("disconnected", "disconnected – press Reconnect");
    return;
  }
  const delay = Math.min(1000 * 2 ** state.attempts, 15000);
  state.attempts += 1;
  timer = setTimeout(async () => { timer = null; await reconnect(); }, delay);
}

async function reconnect() {
  try {
    const token = await freshToken();
    if (token === null) { state.stopped = true; setStatus("ended", "session ended"); return; }
    connect(token);
  } catch (err) {
    setStatus("disconnected", "server unreachable");
    scheduleReconnect();
  }
}

document.getElementById("btn-reconnect").addEventListener("click", () => { state.attempts = 0; reconnect(); });
document.getElementById("btn-scale").addEventListener("click", (event) => {
  state.scale = !state.scale;
  event.currentTarget.classList.toggle("active", state.scale);
  event.currentTarget.setAttribute("aria-pressed", String(state.scale));
  if (state.rfb) { state.rfb.scaleViewport = state.scale; state.rfb.clipViewport = !state.scale; }
});
document.getElementById("btn-fullscreen").addEventListener("click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else (screen.requestFullscreen || screen.webkitRequestFullscreen).call(screen);
});
document.getElementById("btn-keys").addEventListener("click", () => state.rfb && state.rfb.sendCtrlAltDel());
document.getElementById("btn-clipboard-send").addEventListener("click", () => {
  if (state.rfb) { state.rfb.clipboardPasteFrom(clipboardText.value); state.rfb.focus(); }
});
document.getElementById("stop-form").addEventListener("submit", () => { state.stopped = true; });

connect(state.token);
