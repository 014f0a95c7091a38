// The administration page's pictures (Chart.js): node usage over time, launch latency and failures per
// hour, the build timeline, and live thumbnails of the running desktops. Data: GET operations.json
// (web/pictures.py), redrawn every 30 s; thumbnails every 5 s.
(function () {
  "use strict";
  const section = document.getElementById("operations");
  if (!section || typeof Chart === "undefined") return;
  const GiB = 1024 * 1024 * 1024;
  const OUTCOME_COLOURS = {succeeded: "#198754", failed: "#dc3545", cancelled: "#6c757d", running: "#0d6efd",
                           queued: "#ffc107"};
  const PALETTE = ["#0d6efd", "#6f42c1", "#fd7e14", "#20c997", "#d63384", "#198754", "#0dcaf0", "#6c757d"];
  const charts = {};

  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return d.toLocaleString([], {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
  }

  function timeAxis(min, max) {
    const axis = {type: "linear", beginAtZero: false, ticks: {callback: (value) => clock(value), maxTicksLimit: 6}};
    if (min !== undefined) Object.assign(axis, {min, max});
    return axis;
  }

  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    config.options = Object.assign({responsive: true, maintainAspectRatio: false, animation: false}, config.options);
    charts[id] = new Chart(document.getElementById(id), config);
  }

  function nodeChart(id, nodes, guaranteed, schedulable, scale) {
    const datasets = [];
    Object.keys(nodes).sort().forEach((name, index) => {
      const series = nodes[name];
      const colour = PALETTE[index % PALETTE.length];
      const points = (key) => series.t.map((t, i) => ({x: t, y: series[key][i] / scale}));
      datasets.push({label: `${name} guaranteed`, data: points(guaranteed), borderColor: colour,
                     backgroundColor: colour + "33", fill: true, stepped: true, pointRadius: 0});
      datasets.push({label: `${name} schedulable`, data: points(schedulable), borderColor: colour,
                     borderDash: [6, 4], stepped: true, pointRadius: 0});
    });
    draw(id, {type: "line", data: {datasets},
              options: {scales: {x: timeAxis(), y: {beginAtZero: true}}, plugins: {legend: {labels: {boxWidth: 12}}}}});
  }

  function launchChart(launches, now) {
    const at = (key) => launches.map((hour) => ({x: hour.t + 1800, y: hour[key]}));
    draw("chart-launches", {type: "bar", data: {datasets: [
      {type: "line", label: "p50 seconds", data: at("p50"), borderColor: "#0d6efd", yAxisID: "seconds", spanGaps: true},
      {type: "line", label: "p95 seconds", data: at("p95"), borderColor: "#6f42c1", yAxisID: "seconds", spanGaps: true},
      {type: "bar", label: "failures", data: at("failures"), backgroundColor: "#dc3545", yAxisID: "failures",
       barThickness: 6},
    ]}, options: {scales: {x: timeAxis(launches.length ? launches[0].t : now - 86400, now),
      seconds: {position: "left", beginAtZero: true, title: {display: true, text: "seconds"}},
      failures: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false}, ticks: {precision: 0},
                 title: {display: true, text: "failures"}}}}});
  }

  function buildChart(builds, now) {
    const environments = [...new Set(builds.map((b) => b.environment))].sort();
    const byOutcome = {};
    builds.forEach((build) => {
      (byOutcome[build.state] = byOutcome[build.state] || []).push(
        {x: [build.start, Math.max(build.end, build.start + 1)], y: build.environment, id: build.id});
    });
    const datasets = Object.keys(byOutcome).sort().map((state) => ({
      label: state, data: byOutcome[state], backgroundColor: OUTCOME_COLOURS[state] || "#adb5bd",
      borderSkipped: false, minBarLength: 3, barPercentage: 0.7, categoryPercentage: 1}));
    draw("chart-builds", {type: "bar", data: {labels: environments, datasets}, options: {
      indexAxis: "y", scales: {x: timeAxis(now - 7 * 86400, now), y: {type: "category", stacked: true}},
      plugins: {tooltip: {callbacks: {label: (item) => {
        const [start, end] = item.raw.x;
        return `job ${item.raw.id} ${item.dataset.label}: ${clock(start)}, ${Math.round(end - start)} s`;
      }}}}}});
  }

  function thumbnails(running) {
    const box = document.getElementById("thumbnails");
    const template = section.dataset.thumbnailUrl;
    const wanted = new Set(running.map((s) => String(s.id)));
    box.querySelectorAll("figure[data-session]").forEach((figure) => {
      if (!wanted.has(figure.dataset.session)) figure.remove();
    });
    running.forEach((session) => {
      if (box.querySelector(`figure[data-session="${session.id}"]`)) return;
      const figure = document.createElement("figure");
      figure.className = "figure m-0";
      figure.dataset.session = session.id;
      const image = document.createElement("img");
      image.className = "figure-img img-thumbnail desktop-thumbnail";
      image.width = 240;
      image.alt = `desktop of session ${session.id}`;
      image.dataset.src = template.replace("/0/", `/${session.id}/`);
      const caption = document.createElement("figcaption");
      caption.className = "figure-caption small";
      caption.textContent = `#${session.id} ${session.user} · ${session.environment} ${session.version} · ${session.node || ""}`;
      figure.append(image, caption);
      box.append(figure);
    });
    document.getElementById("no-desktops").classList.toggle("d-none", running.length > 0);
    window.ASCI_refreshThumbnails && window.ASCI_refreshThumbnails();
  }

  async function refresh() {
    const error = document.getElementById("operations-error");
    try {
      const reply = await fetch(section.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!reply.ok) throw new Error(`operations.json answered ${reply.status}`);
      const data = await reply.json();
      nodeChart("chart-node-cpus", data.nodes, "guaranteed_cpus", "schedulable_cpus", 1);
      nodeChart("chart-node-memory", data.nodes, "guaranteed_memory_bytes", "schedulable_memory_bytes", GiB);
      launchChart(data.launches, data.now);
      buildChart(data.builds, data.now);
      thumbnails(data.running);
      section.dataset.drawn = String(Date.now());
      error.classList.add("d-none");
    } catch (exc) {
      error.textContent = `The charts could not be updated: ${exc.message}`;
      error.classList.remove("d-none");
    }
  }

  refresh();
  setInterval(refresh, 30000);
})();
