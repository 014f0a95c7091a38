// The desktop through noVNC. The page opens as soon as a launch is asked for: noVNC loads while the
// desktop starts, the launch's progress is shown over the screen, and the viewer connects the moment
// the connect URL answers with a token (409 and the session's state until then). Then: reconnect by
// itself with fresh tokens when the connection drops, remote resize (the desktop's size follows the window; "Fit to window" scales instead),
// full screen, clipboard, and an on-screen keyboard on touch devices. A guest of a shared desktop
// (data-guest-mode view|control) scales rather than resizing the owner's desktop; view-only input is
// ignored by the VNC server itself (the view-only password), and by the viewer too.
const box = document.getElementById("viewer");
const screen = document.getElementById("screen");
const statusEl = document.getElementById("vnc-status");
const clipboardText = document.getElementById("clipboard-text");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
// performance marks (asci:*) let a benchmark see where the time from click to desktop goes
performance.mark("asci:viewer-start");
const rfbModule = import(box.dataset.rfbUrl) // fetched while the desktop starts
  .then((module) => { performance.mark("asci:novnc-loaded"); return module; });

let guestMode = box.dataset.guestMode || "";
const state = { status: "starting", rfb: null, password: null, attempts: 0, scale: Boolean(guestMode),
                stopped: false, guest: guestMode };
window.asciViewer = state;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function setStatus(status, text) {
  state.status = status;
  statusEl.dataset.state = status;
  statusEl.textContent = text || status;
  statusEl.className = "badge text-bg-" + ({ connected: "success", connecting: "secondary", starting: "secondary",
                                             reconnecting: "warning", ended: "dark" }[status] || "danger");
}

// ------------------------------------------------------------------ the launch's progress
const progress = {
  box: document.getElementById("starting"),
  state: document.getElementById("session-state"),
  message: document.getElementById("session-message"),
  bar: document.getElementById("bar"),
  back: document.getElementById("starting-back"),
  widths: { pending: 20, starting: 55, running: 90 },
  show(info, text) {
    this.box.classList.remove("d-none");
    this.box.classList.add("d-flex");
    this.box.dataset.state = info.state;
    this.state.textContent = info.state;
    this.message.textContent = text || info.message || "Preparing your desktop…";
    this.bar.style.width = (this.widths[info.state] || 100) + "%";
  },
  ended(info) {
    this.show(info, info.message || "The session is " + info.state + ".");
    this.box.dataset.final = "yes";
    this.bar.classList.remove("progress-bar-animated", "progress-bar-striped");
    this.bar.classList.add(info.state === "stopped" ? "bg-secondary" : "bg-danger");
    this.back.classList.remove("d-none");
  },
  hide() {
    this.box.classList.add("d-none");
    this.box.classList.remove("d-flex");
  },
};

// ------------------------------------------------------------------ tokens
// {token, password, state...} once the session runs; {state, message, final} (HTTP 409) before.
async function askToConnect() {
  const response = await fetch(box.dataset.connectUrl, {
    method: "POST", headers: { "X-CSRFToken": csrf, Accept: "application/json" }, cache: "no-store",
  });
  if (response.status === 401 || response.redirected) { location.reload(); throw new Error("logged out"); }
  if (response.ok || response.status === 409) return response.json();
  throw new Error("connect request failed: " + response.status);
}

// Polls until the desktop runs (returns the connect answer) or the session ended (returns null).
async function waitUntilReady() {
  const began = performance.now();
  let delay = 150;
  for (;;) {
    let info;
    try {
      info = await askToConnect();
    } catch (err) {
      progress.message.textContent = "Cannot reach the server, retrying…";
      await sleep(2000);
      continue;
    }
    if (info.token) return info;
    if (info.final) { progress.ended(info); setStatus("ended", "session " + info.state); return null; }
    progress.show(info);
    if (performance.now() - began > 30000) delay = Math.min(delay * 1.5, 2000); // a slow start: poll less
    await sleep(delay);
  }
}

// ------------------------------------------------------------------ the VNC connection
async function connect(token) {
  const { default: RFB } = await rfbModule;
  if (state.rfb) { try { state.rfb.disconnect(); } catch (e) { /* already closed */ } }
  screen.replaceChildren();
  if (state.attempts) setStatus("reconnecting", "reconnecting… (attempt " + state.attempts + ")");
  else setStatus("connecting", "connecting");
  const url = box.dataset.wsBase + "/websockify?token=" + encodeURIComponent(token);
  const rfb = new RFB(screen, url, { credentials: { password: state.password }, shared: true });
  applyScaling(rfb);
  rfb.viewOnly = guestMode === "view";
  rfb.focusOnClick = true;
  rfb.background = "#2b2b2b";
  rfb.addEventListener("connect", () => {
    performance.mark("asci:vnc-connected");
    state.attempts = 0; state.lost = ""; progress.hide(); setStatus("connected"); rfb.focus();
  });
  rfb.addEventListener("disconnect", (event) => {
    if (state.rfb !== rfb) return;
    if (state.stopped) { setStatus("ended", "session ended"); return; }
    state.lost = event.detail.clean ? "disconnected" : "connection lost";
    scheduleReconnect();
  });
  rfb.addEventListener("credentialsrequired", () => rfb.sendCredentials({ password: state.password }));
  rfb.addEventListener("securityfailure", (event) => setStatus("failed", "refused: " + (event.detail.reason || "authentication")));
  rfb.addEventListener("clipboard", (event) => { clipboardText.value = event.detail.text; });
  state.rfb = rfb;
}

// A dropped connection (the network, the proxy, a server restart) is taken up again by itself: a fresh
// token each time (a token opens one connection only), after 0.5, 1, 2, 4 ... at most 15 s, for as long
// as the session runs; the status says so while it tries. Coming back online retries at once.
let timer = null;
function scheduleReconnect() {
  if (timer) return;
  const delay = Math.min(500 * 2 ** state.attempts, 15000);
  state.attempts += 1;
  setStatus("reconnecting", (state.lost || "connection lost") + " – reconnecting in " + Math.round(delay / 1000 || 1)
            + " s (attempt " + state.attempts + ")");
  timer = setTimeout(async () => { timer = null; await reconnect(); }, delay);
}
window.addEventListener("online", () => {
  if (!timer || state.stopped) return;
  clearTimeout(timer); timer = null; reconnect();
});

async function reconnect() {
  try {
    const info = await askToConnect();
    if (!info.token) {
      if (info.final) { state.stopped = true; progress.ended(info); setStatus("ended", "session ended"); }
      else scheduleReconnect();
      return;
    }
    state.password = info.password;
    showMode(info.mode);
    await connect(info.token);
  } catch (err) {
    state.lost = "server unreachable";
    scheduleReconnect();
  }
}

// A guest's share may change mode while they watch: the server ends the connection, and the next
// token answer says the new mode (and brings the new mode's password).
function showMode(mode) {
  if (!guestMode || !mode || mode === guestMode) return;
  guestMode = mode;
  state.guest = mode;
  const badge = document.getElementById("share-mode");
  if (badge) badge.textContent = mode === "view" ? "view only" : "control";
  keyboardButton.classList.toggle("d-none", !(isTouch && mode !== "view"));
}

// Remote resize (the desktop's resolution follows the window, rotation included) unless "Fit to window"
// is on or this is a guest: then the picture is scaled to the window and the desktop keeps its size.
function applyScaling(rfb) {
  rfb.scaleViewport = state.scale;
  rfb.resizeSession = !state.scale && !guestMode;
  rfb.clipViewport = false;
}

// ------------------------------------------------------------------ toolbar
const on = (id, event, handler) => { const el = document.getElementById(id); if (el) el.addEventListener(event, handler); };
const scaleButton = document.getElementById("btn-scale");
function showScale() {
  scaleButton.classList.toggle("active", state.scale);
  scaleButton.setAttribute("aria-pressed", String(state.scale));
}
showScale();
on("btn-reconnect", "click", () => {
  if (timer) { clearTimeout(timer); timer = null; }
  state.attempts = 0; reconnect();
});
on("btn-scale", "click", () => {
  state.scale = !state.scale;
  showScale();
  if (state.rfb) applyScaling(state.rfb);
});
on("btn-fullscreen", "click", () => {
  if (document.fullscreenElement) document.exitFullscreen();
  else (screen.requestFullscreen || screen.webkitRequestFullscreen).call(screen);
});
on("btn-keys", "click", () => state.rfb && state.rfb.sendCtrlAltDel());
on("btn-clipboard-send", "click", () => {
  if (state.rfb) { state.rfb.clipboardPasteFrom(clipboardText.value); state.rfb.focus(); }
});
on("stop-form", "submit", () => { state.stopped = true; });

// ------------------------------------------------------------------ on-screen keyboard (touch devices)
// Focusing a hidden text field brings up the device's keyboard; what is typed there is sent to the
// desktop as key presses (noVNC's keysym table maps characters), then the field is emptied.
const touchInput = document.getElementById("touch-input");
const keyboardButton = document.getElementById("btn-keyboard");
const isTouch = "ontouchstart" in window || navigator.maxTouchPoints > 0;
const KEY = { BackSpace: 0xff08, Return: 0xff0d, Tab: 0xff09, Escape: 0xff1b };
if (isTouch && guestMode !== "view") keyboardButton.classList.remove("d-none");
keyboardButton.addEventListener("click", () => { touchInput.value = ""; touchInput.focus(); });
const keysyms = import(box.dataset.keysymUrl).then((module) => module.default);
async function sendText(text) {
  const table = await keysyms;
  for (const char of text) {
    if (!state.rfb) return;
    if (char === "\n") { state.rfb.sendKey(KEY.Return, "Enter"); continue; }
    state.rfb.sendKey(table.lookup(char.codePointAt(0)));
  }
}
touchInput.addEventListener("input", (event) => {
  if (!state.rfb) return;
  if (event.inputType === "deleteContentBackward") state.rfb.sendKey(KEY.BackSpace, "Backspace");
  else if (event.inputType === "insertLineBreak") state.rfb.sendKey(KEY.Return, "Enter");
  else if (event.data) sendText(event.data);
  else if (touchInput.value) sendText(touchInput.value);
  touchInput.value = "";
});
touchInput.addEventListener("keydown", (event) => {  // keys that give no input event
  const name = { Backspace: "BackSpace", Enter: "Return", Tab: "Tab", Escape: "Escape" }[event.key];
  if (name && state.rfb && !touchInput.value) { event.preventDefault(); state.rfb.sendKey(KEY[name], event.key); }
});
state.sendText = sendText;

// ------------------------------------------------------------------ start
const ready = await waitUntilReady();
if (ready) {
  performance.mark("asci:desktop-ready");
  state.password = ready.password;
  showMode(ready.mode);
  progress.show(ready, "Your desktop is ready, connecting…");
  await connect(ready.token);
}
