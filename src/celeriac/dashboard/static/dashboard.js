// celeriac dashboard: redraw the live part of the page when the server says something
// changed. The server renders (and escapes) every fragment; this script only swaps it in.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.fragment || !window.EventSource) { return; }
  var url = live.dataset.fragment;
  var busy = false;
  var again = false;

  function redraw() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "X-Fragment": "1" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (document.activeElement && live.contains(document.activeElement) &&
            document.activeElement.tagName === "INPUT") {
          return; // someone is typing in a form here: keep it as it is
        }
        live.innerHTML = html;
        document.body.dataset.version = String(Number(document.body.dataset.version || 0) + 1);
      })
      .catch(function () { markDown("the dashboard server does not answer"); })
      .then(function () {
        busy = false;
        if (again) { again = false; redraw(); }
      });
  }

  function markDown(text) {
    var status = document.getElementById("broker-status");
    if (status) { status.className = "down"; status.textContent = text + "; retrying"; }
  }

  function connect() {
    var source = new EventSource("/stream");
    source.addEventListener("message", redraw);
    source.addEventListener("error", function () {
      markDown("lost the live stream");
      source.close();
      window.setTimeout(connect, 1000);
    });
  }
  connect();
})();
