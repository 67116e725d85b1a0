// Live progress on a workspace campaign page: polls the page's JSON endpoint (data-url on
// #progress) every 1.5 s, writes the figures into the [data-field] cells and the bar, and
// stops once the campaign has ended. Without script the page shows the same figures on reload.
"use strict";
(function () {
  var section = document.getElementById("progress");
  if (!section || !section.dataset.url) {
    return;
  }
  var url = section.dataset.url;
  var bar = document.getElementById("progress-bar");
  var status = document.getElementById("status");
  var EVERY_MS = 1500;

  function channels(byChannel) {
    var names = Object.keys(byChannel);
    if (names.length === 0) {
      return "0";
    }
    return names.map(function (name) { return name + ": " + byChannel[name]; }).join(", ");
  }

  function show(figures) {
    section.querySelectorAll("[data-field]").forEach(function (cell) {
      var name = cell.dataset.field;
      var value = name === "unsubscribed" ? channels(figures.unsubscribed) : figures[name];
      if (value !== undefined) {
        cell.textContent = String(value);
      }
    });
    if (bar) {
      bar.value = figures.percent;
      bar.textContent = figures.percent + "%";
    }
    if (status) {
      status.textContent = figures.status;
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("progress: HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (figures) {
        show(figures);
        if (!figures.ended) {
          window.setTimeout(poll, EVERY_MS);
        }
      })
      .catch(function () {
        window.setTimeout(poll, EVERY_MS * 2); // a network hiccup: try again, more slowly
      });
  }

  window.setTimeout(poll, EVERY_MS);
})();
