// Small enhancements over plain HTML forms: live status and new rows without a reload, product
// checkboxes that save in place, focus kept on the row and button a person was working on, the
// browser's language sent with typed amounts and dates, and disabled buttons that stay focusable
// but never act. Without this script every form still works with a full page load.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var FOCUS_KEY = "revops-focus";
  document.documentElement.classList.add("js");

  function get(url) {
    return fetch(url, { headers: { "Accept": "application/json", "X-Revops-Poll": "1" }, credentials: "same-origin" });
  }

  // Replace a node's HTML but keep keyboard focus on the same control when it still exists.
  // `replacement` is an element (replaces `target`) or an HTML string (becomes its content).
  function swap(target, replacement) {
    var active = document.activeElement;
    var inside = active && target.contains(active);
    var key = inside && active.getAttribute("data-action");
    var openMenu = inside && active.closest("details[open]");
    var fresh = target;
    if (typeof replacement === "string") { target.innerHTML = replacement; } else { target.replaceWith(replacement); fresh = replacement; }
    if (key) {
      var again = fresh.querySelector('[data-action="' + key + '"]');
      if (again) {
        var menu = again.closest("details");
        if (menu && openMenu) { menu.open = true; }
        again.focus();
      }
    }
    return fresh;
  }

  // Where to put focus after a click reloaded the page: the same button if it is visible, else
  // the row's next action, else the row's link (issue 17 #14).
  function restoreFocus() {
    var saved;
    try { saved = JSON.parse(sessionStorage.getItem(FOCUS_KEY) || "null"); } catch (e) { saved = null; }
    sessionStorage.removeItem(FOCUS_KEY);
    if (!saved) { return; }
    var scope = document.getElementById("plan-" + saved.plan) || document.getElementById("live");
    if (!scope) { return; }
    var same = scope.querySelector('[data-action="' + saved.action + '"]');
    var target = null;
    if (same && !same.closest("details:not([open])")) { target = same; }
    if (!target) { target = scope.querySelector(".actions .btn.primary") || scope.querySelector(".actions > form button, .actions > .has-tip button"); }
    if (!target && saved.action === "products") { target = scope.querySelector(".products-pick summary"); }
    if (!target) { target = scope.querySelector("a.company"); }
    if (!target) { return; }
    target.focus();
    // Scrolling to the row's #plan-N fragment, after the page loads, can take focus back to the
    // page: put it on the button again once that is done.
    window.addEventListener("load", function () {
      setTimeout(function () { if (document.activeElement !== target && document.contains(target)) { target.focus(); } }, 0);
    });
  }

  function rememberFocus(plan, action) {
    try { sessionStorage.setItem(FOCUS_KEY, JSON.stringify({ plan: plan, action: action })); } catch (e) { /* private mode */ }
  }

  function announce(text) {
    var note = document.getElementById("live-note");
    if (note) { note.textContent = text; }
  }

  function pollTable(table) {
    var url = table.getAttribute("data-live-url");
    var body = table.querySelector("tbody");
    function tick() {
      var rows = table.querySelectorAll("tbody tr[data-plan]");
      var parts = [];
      rows.forEach(function (row) { parts.push(row.getAttribute("data-plan") + ":" + row.getAttribute("data-version")); });
      var back = location.pathname + location.search;
      var query = "?rows=" + encodeURIComponent(parts.join(",")) + "&back=" + encodeURIComponent(back);
      var newest = table.getAttribute("data-newest");
      if (newest) { query += "&after=" + encodeURIComponent(newest) + (table.getAttribute("data-filters") ? "&" + table.getAttribute("data-filters") : ""); }
      get(url + query).then(function (response) {
        if (!response.ok) { return null; }
        return response.json();
      }).then(function (data) {
        if (!data) { return; }
        if (data.html) {
          var template = document.createElement("template");
          template.innerHTML = data.html.trim();
          Array.prototype.slice.call(template.content.querySelectorAll("tr[data-plan]")).forEach(function (fresh) {
            var row = document.getElementById(fresh.id);
            if (row) { bind(swap(row, fresh)); }
          });
        }
        if (data.new_html) {
          var added = document.createElement("template");
          added.innerHTML = data.new_html.trim();
          var fresh = Array.prototype.slice.call(added.content.querySelectorAll("tr[data-plan]")).filter(function (row) {
            return !document.getElementById(row.id);
          });
          var empty = body.querySelector("tr.no-rows");
          if (empty && fresh.length) { empty.remove(); }
          fresh.reverse().forEach(function (row) { body.insertBefore(row, body.firstChild); bind(row); row.classList.add("is-new"); });
          if (fresh.length) { announce(fresh.length === 1 ? "1 row added" : fresh.length + " rows added"); }
        }
        if (data.newest) { table.setAttribute("data-newest", String(data.newest)); }
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

  // Product checkboxes save as each changes, in place: no page load per box (issue 17 #14).
  function saveProducts(form, box) {
    var status = form.querySelector(".products-status");
    var data = new FormData(form);
    if (status) { status.classList.remove("is-error"); status.textContent = "Saving…"; }
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
                         headers: { "Accept": "application/json", "X-Revops-Inline": "1" } })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (result) {
        if (!result.ok || !result.body.ok) { throw new Error(result.body.message || "Not saved."); }
        if (status) { status.textContent = result.body.message; }
        var row = form.closest("tr[data-plan]");
        var summary = row && row.querySelector(".products-pick summary");
        if (summary) {
          var checked = form.querySelectorAll('input[name="products"]:checked');
          var first = checked.length ? checked[0].parentNode.textContent.trim() : "None";
          summary.firstChild.textContent = first + (checked.length > 1 ? " +" + (checked.length - 1) : "");
        }
      })
      .catch(function (error) {
        box.checked = !box.checked;  // the row did not change: show what it holds
        if (status) { status.classList.add("is-error"); status.textContent = error.message; }
      });
  }

  function bind(root) {
    root.querySelectorAll('[aria-disabled="true"]').forEach(function (button) {
      button.addEventListener("click", function (event) { event.preventDefault(); button.focus(); });
    });
    root.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll('input[type="checkbox"]').forEach(function (box) {
        box.addEventListener("change", function () { saveProducts(form, box); });
      });
    });
    root.querySelectorAll("form.action").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var message = form.getAttribute("data-confirm");
        // The row page's buttons come from the status panel; its duplicate note asks the same question.
        var duplicate = document.getElementById("duplicate-warning");
        if (!message && duplicate && form.querySelector('[data-action="create_customer"]')) {
          message = duplicate.textContent.trim() + " Create a Stripe customer anyway?";
        }
        if (message && !window.confirm(message)) { event.preventDefault(); return; }
        var row = form.closest("[data-plan]");
        var button = form.querySelector("[data-action]");
        var plan = row ? row.getAttribute("data-plan") : (document.getElementById("live") ? "live" : "");
        rememberFocus(plan, button ? button.getAttribute("data-action") : "");
      });
    });
    root.querySelectorAll("input[data-locale]").forEach(function (input) {
      if (!input.value && navigator.language) { input.value = navigator.language; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bind(document);
    var table = document.querySelector("table[data-live-url]");
    if (table) { pollTable(table); }
    var section = document.querySelector("section[data-live-url]");
    if (section) { pollPlan(section); }
    var problems = document.getElementById("problems");
    if (problems) { problems.focus(); } else { restoreFocus(); }
  });
})();
