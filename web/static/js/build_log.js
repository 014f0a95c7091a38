// Follows a running build job's log: polls the build API until the job has finished.
(function () {
  "use strict";
  const log = document.getElementById("job-log");
  const finished = ["succeeded", "failed", "cancelled"];
  if (finished.includes(log.dataset.state)) return;

  async function poll() {
    let job;
    try {
      const response = await fetch(log.dataset.url, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) { setTimeout(poll, 5000); return; }
      job = await response.json();
    } catch (err) {
      setTimeout(poll, 5000);
      return;
    }
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    if (job.log) log.textContent = job.log;
    if (atBottom) log.scrollTop = log.scrollHeight;
    document.getElementById("job-state").textContent = job.state;
    document.getElementById("job-version").textContent = job.version || "–";
    log.dataset.state = job.state;
    if (job.error) {
      const box = document.getElementById("job-error");
      box.textContent = job.error;
      box.classList.remove("d-none");
    }
    if (finished.includes(job.state)) {
      document.getElementById("log-note").textContent = "";
      return;
    }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
})();
