// Keeps the task page live and stops double submits. Task data reaches the DOM
// only through textContent and setAttribute, never as HTML.
(function () {
  "use strict";

  var FINAL = ["completed", "failed", "canceled"];

  // A form marked data-once sends once: its buttons are disabled as it goes.
  function guardForms() {
    var forms = document.querySelectorAll("form[data-once]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (form.getAttribute("data-sent") === "true") {
          event.preventDefault();
          return;
        }
        form.setAttribute("data-sent", "true");
        var buttons = form.querySelectorAll("button[type=submit], input[type=submit]");
        Array.prototype.forEach.call(buttons, function (button) {
          // Disable after the browser has collected the form data.
          setTimeout(function () { button.disabled = true; button.setAttribute("aria-busy", "true"); }, 0);
        });
      });
    });
  }

  function duration(seconds) {
    if (seconds === null || !isFinite(seconds)) { return "—"; }
    seconds = Math.max(0, Math.round(seconds));
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var secs = seconds % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (hours) { return hours + " h " + two(minutes) + " min"; }
    if (minutes) { return minutes + " min " + two(secs) + " s"; }
    return secs + " s";
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function followTask(root) {
    var url = root.getAttribute("data-api-url");
    var interval = parseInt(root.getAttribute("data-poll-ms"), 10) || 1000;
    var skew = 0;  // server clock minus browser clock, from the Date header
    var failures = 0;
    var view = null;

    function showTiming() {
      if (!view || !view.started_at) { return; }
      var start = Date.parse(view.started_at);
      var end = view.ended_at ? Date.parse(view.ended_at) : Date.now() + skew;
      var elapsed = (end - start) / 1000;
      setText("elapsed", duration(elapsed));
      var percent = view.progress && view.progress.percent;
      var left = null;
      if (view.status === "processing" && percent > 0 && percent < 100) {
        left = elapsed * (100 - percent) / percent;
      }
      setText("time-left", duration(left));
    }

    function render(data) {
      view = data;
      var status = document.getElementById("status");
      if (status) {
        status.textContent = data.status;
        status.setAttribute("data-status", data.status);
        status.setAttribute("class", "badge badge-" + data.status);
      }
      root.setAttribute("data-status", data.status);
      var progress = data.progress || {};
      var percent = data.status === "completed" ? 100 : progress.percent;
      var bar = document.getElementById("progress-bar");
      if (bar && typeof percent === "number") {
        bar.setAttribute("value", String(percent));
        bar.setAttribute("aria-valuenow", String(percent));
        bar.textContent = String(percent);
      }
      setText("progress-percent", typeof percent === "number" ? Math.round(percent) + " %" : "—");
      setText("progress-message", progress.message || "");
      setText("attempt", data.attempt.number + " of " + data.attempt.of);
      var cancelNote = document.getElementById("cancel-requested");
      if (cancelNote) { cancelNote.hidden = !data.cancel_requested; }
      var cancelForm = document.getElementById("cancel-form");
      if (cancelForm) { cancelForm.hidden = FINAL.indexOf(data.status) >= 0; }
      showTiming();
    }

    function poll() {
      fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
        .then(function (response) {
          var date = Date.parse(response.headers.get("Date") || "");
          if (!isNaN(date)) { skew = date - Date.now(); }
          if (response.status === 404) { window.location.reload(); throw new Error("gone"); }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          render(data);
          if (FINAL.indexOf(data.status) >= 0) {
            // The server renders the result, error and Retry button of a final state.
            window.location.reload();
            return;
          }
          setTimeout(poll, interval);
        })
        .catch(function (error) {
          if (error && error.message === "gone") { return; }
          failures += 1;
          setTimeout(poll, Math.min(interval * Math.pow(2, failures), 30000));
        });
    }

    setInterval(showTiming, 1000);
    setTimeout(poll, interval);
  }

  document.addEventListener("DOMContentLoaded", function () {
    guardForms();
    var root = document.getElementById("task");
    if (root && root.getAttribute("data-final") !== "true") {
      followTask(root);
    }
  });
})();
