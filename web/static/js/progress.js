// Polls the session state until the desktop is ready, then opens it.
(function () {
  "use strict";
  const box = document.getElementById("progress");
  const stateEl = document.getElementById("session-state");
  const messageEl = document.getElementById("session-message");
  const bar = document.getElementById("bar");
  const widths = { pending: 20, starting: 55, running: 100 };
  let delay = 500;

  async function poll() {
    let info;
    try {
      const response = await fetch(box.dataset.stateUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.status === 401 || response.redirected) { location.reload(); return; }
      info = await response.json();
    } catch (err) {
      messageEl.textContent = "Cannot reach the server, retrying…";
      setTimeout(poll, 3000);
      return;
    }
    stateEl.textContent = info.state;
    if (info.message) messageEl.textContent = info.message;
    bar.style.width = (widths[info.state] || 100) + "%";
    if (info.ready && box.dataset.owner === "yes") {
      messageEl.textContent = "Your desktop is ready, opening it…";
      location.assign(box.dataset.desktopUrl);
      return;
    }
    if (info.final) {
      bar.classList.remove("progress-bar-animated", "progress-bar-striped");
      bar.classList.add(info.state === "stopped" ? "bg-secondary" : "bg-danger");
      if (!info.message) messageEl.textContent = "The session is " + info.state + ".";
      return;
    }
    delay = Math.min(delay * 1.3, 3000);
    setTimeout(poll, delay);
  }
  poll();
})();
