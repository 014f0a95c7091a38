// Live thumbnails of running desktops: every img.desktop-thumbnail with a data-src (GET
// /sessions/<id>/thumbnail.png) is reloaded every 5 s; the new picture replaces the old one only once it
// has loaded (no flicker), and a desktop that cannot be shown says so in its alt text.
(function () {
  "use strict";
  const EVERY_MS = 5000;

  function refresh() {
    document.querySelectorAll("img.desktop-thumbnail[data-src]").forEach((image) => {
      if (image.dataset.loading === "1") return;
      image.dataset.loading = "1";
      const next = new Image();
      next.onload = () => {
        image.src = next.src;
        image.dataset.loading = "0";
        image.dataset.loaded = String(Number(image.dataset.loaded || 0) + 1);
        image.classList.remove("opacity-25");
      };
      next.onerror = () => {
        image.dataset.loading = "0";
        image.classList.add("opacity-25");
        image.title = "the desktop cannot be shown right now";
      };
      next.src = `${image.dataset.src}?t=${Date.now()}`;
    });
  }

  window.ASCI_refreshThumbnails = refresh;
  refresh();
  setInterval(refresh, EVERY_MS);
})();
