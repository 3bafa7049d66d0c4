// Engram web UI: small enhancements over pages that work without JavaScript.
// Copy buttons, the client tab strip (ARIA tabs with arrow keys), and "select all" for bulk actions.
"use strict";

(function () {
  function announce(message) {
    var status = document.querySelector("[data-copy-status]");
    if (status) {
      status.textContent = "";
      window.setTimeout(function () { status.textContent = message; }, 50);
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function setUpCopyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) { return; }
      var label = button.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(target.textContent).then(function () {
          button.textContent = "Copied";
          button.classList.add("copied");
          announce("Copied to the clipboard.");
          window.setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 2000);
        }, function () {
          announce("Copying did not work; select the text and copy it yourself.");
        });
      });
    });
  }

  // Scrolls the strip sideways to show the tab, never the page.
  function reveal(tab) {
    var strip = tab.parentElement;
    var left = tab.offsetLeft - strip.offsetLeft;
    if (left < strip.scrollLeft || left + tab.offsetWidth > strip.scrollLeft + strip.clientWidth) {
      strip.scrollLeft = Math.max(0, left - 16);
    }
  }

  function setUpTabs() {
    document.querySelectorAll("[data-tabs]").forEach(function (container) {
      var tabs = Array.prototype.slice.call(container.querySelectorAll('[role="tab"]'));
      function select(tab, focus) {
        tabs.forEach(function (other) {
          var chosen = other === tab;
          other.setAttribute("aria-selected", chosen ? "true" : "false");
          other.setAttribute("tabindex", chosen ? "0" : "-1");
          var panel = document.getElementById(other.getAttribute("aria-controls"));
          if (panel) { panel.hidden = !chosen; }
        });
        if (focus) { tab.focus(); }
        reveal(tab);
        var client = tab.getAttribute("data-client");
        document.querySelectorAll("[data-selected-client]").forEach(function (input) { input.value = client; });
        if (window.history && window.history.replaceState && window.location.pathname === "/connect") {
          var here = new URL(window.location.href);
          here.searchParams.set("client", client);
          window.history.replaceState(null, "", here.pathname + here.search);
        }
      }
      tabs.forEach(function (tab, index) {
        tab.addEventListener("click", function (event) {
          event.preventDefault();
          select(tab, false);
        });
        tab.addEventListener("keydown", function (event) {
          var next = null;
          if (event.key === "ArrowRight") { next = tabs[(index + 1) % tabs.length]; }
          else if (event.key === "ArrowLeft") { next = tabs[(index - 1 + tabs.length) % tabs.length]; }
          else if (event.key === "Home") { next = tabs[0]; }
          else if (event.key === "End") { next = tabs[tabs.length - 1]; }
          else if (event.key === " ") { next = tab; }
          if (next) {
            event.preventDefault();
            select(next, true);
          }
        });
      });
      var current = tabs.filter(function (tab) { return tab.getAttribute("aria-selected") === "true"; })[0];
      if (current) { reveal(current); }
    });
  }

  function setUpSelectAll() {
    document.querySelectorAll("input[data-select-all]").forEach(function (box) {
      var form = box.form;
      var name = box.getAttribute("data-select-all");
      var label = document.getElementById("select-all-label");
      box.hidden = false;
      if (label) { label.hidden = false; }
      function boxes() { return Array.prototype.slice.call(form.querySelectorAll('input[type="checkbox"][name="' + name + '"]')); }
      box.addEventListener("change", function () {
        boxes().forEach(function (item) { item.checked = box.checked; });
      });
      form.addEventListener("change", function (event) {
        if (event.target !== box && event.target.name === name) {
          var all = boxes();
          var checked = all.filter(function (item) { return item.checked; }).length;
          box.checked = checked === all.length;
          box.indeterminate = checked > 0 && checked < all.length;
        }
      });
    });
  }

  function start() {
    setUpCopyButtons();
    setUpTabs();
    setUpSelectAll();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
