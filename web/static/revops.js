// Small enhancements over plain HTML forms: live status without a reload, product checkboxes
// that save on change, and disabled buttons that stay focusable but never act.
(function () {
  "use strict";
  var POLL_MS = 3000;
  document.documentElement.classList.add("js");

  function get(url) {
    return fetch(url, { headers: { "Accept": "application/json", "X-Revops-Poll": "1" }, credentials: "same-origin" });
  }

  // Replace a node's HTML but keep keyboard focus on the same control when it still exists.
  // `replacement` is an element (replaces `target`) or an HTML string (becomes its content).
  function swap(target, replacement) {
    var active = document.activeElement;
    var key = active && target.contains(active) && active.getAttribute("data-action");
    var fresh = target;
    if (typeof replacement === "string") { target.innerHTML = replacement; } else { target.replaceWith(replacement); fresh = replacement; }
    if (key) {
      var again = fresh.querySelector('[data-action="' + key + '"]');
      if (again) { again.focus(); }
    }
    return fresh;
  }

  function pollTable(table) {
    var url = table.getAttribute("data-live-url");
    function tick() {
      var rows = table.querySelectorAll("tbody tr[data-plan]");
      if (!rows.length) { return; }
      var parts = [];
      rows.forEach(function (row) { parts.push(row.getAttribute("data-plan") + ":" + row.getAttribute("data-version")); });
      var back = location.pathname + location.search;
      get(url + "?rows=" + encodeURIComponent(parts.join(",")) + "&back=" + encodeURIComponent(back)).then(function (response) {
        if (!response.ok) { return null; }
        return response.json();
      }).then(function (data) {
        if (!data || !data.html) { return; }
        var template = document.createElement("template");
        template.innerHTML = data.html.trim();
        Array.prototype.slice.call(template.content.querySelectorAll("tr[data-plan]")).forEach(function (fresh) {
          var row = document.getElementById(fresh.id);
          if (row) { bind(swap(row, fresh)); }
        });
      }).catch(function () { /* offline for a moment: try again on the next tick */ });
    }
    setInterval(tick, POLL_MS);
  }

  function pollPlan(section) {
    var url = section.getAttribute("data-live-url");
    function tick() {
      get(url + "?version=" + encodeURIComponent(section.getAttribute("data-version"))).then(function (response) {
        if (response.status !== 200) { return null; }
        return response.json();
      }).then(function (data) {
        if (!data) { return; }
        swap(section, data.html);
        section.setAttribute("data-version", data.version);
        bind(section);
      }).catch(function () {});
    }
    setInterval(tick, POLL_MS);
  }

  function bind(root) {
    root.querySelectorAll('[aria-disabled="true"]').forEach(function (button) {
      button.addEventListener("click", function (event) { event.preventDefault(); button.focus(); });
    });
    root.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll('input[type="checkbox"]').forEach(function (box) {
        box.addEventListener("change", function () { form.requestSubmit(); });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bind(document);
    var table = document.querySelector("table[data-live-url]");
    if (table) { pollTable(table); }
    var section = document.querySelector("section[data-live-url]");
    if (section) { pollPlan(section); }
    var problems = document.getElementById("problems");
    if (problems) { problems.focus(); }
  });
})();
