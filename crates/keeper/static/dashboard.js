// zoomkeeper dashboard conveniences. Every page works without this script; it only
// adds copy buttons, confirmations, local times, the project switcher's autosubmit
// and live refresh of marked regions. Loaded from /dashboard/static (CSP: no inline
// script).
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const t = new Date(el.getAttribute("datetime"));
    if (isNaN(t)) continue;
    el.textContent = t.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
  }
}

function copyButtons(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = "value" in source ? source.value : source.textContent;
      try {
        await navigator.clipboard.writeText(text.trim());
      } catch (_) {
        source.select && source.select();
        document.execCommand && document.execCommand("copy");
      }
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }
}

function confirmations(root) {
  for (const form of root.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

function autosubmit(root) {
  for (const select of root.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const el of root.querySelectorAll("[data-hide-with-js]")) el.hidden = true;
}

// Regions marked data-refresh="seconds" (with an id) are reloaded from the same URL
// while the page is visible and nobody is typing in them.
function liveRegions() {
  for (const region of document.querySelectorAll("[data-refresh][id]")) {
    const every = Math.max(2, Number(region.dataset.refresh) || 5) * 1000;
    setInterval(async () => {
      if (document.visibilityState !== "visible") return;
      if (region.contains(document.activeElement) && document.activeElement !== document.body) return;
      try {
        const response = await fetch(window.location.href, {
          credentials: "same-origin",
          // Not a person's use: the session still ends after its idle timeout.
          headers: { "X-Zoomkeeper-Refresh": "1" },
        });
        if (!response.ok) return;
        const html = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = html.getElementById(region.id);
        if (!fresh) return;
        region.innerHTML = fresh.innerHTML;
        localTimes(region);
        copyButtons(region);
        confirmations(region);
      } catch (_) { /* the next tick tries again */ }
    }, every);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  copyButtons(document);
  confirmations(document);
  autosubmit(document);
  liveRegions();
});
