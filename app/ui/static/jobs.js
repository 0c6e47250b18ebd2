// The jobs list, live: each unfinished job shown (at most five, marked data-events by the page)
// follows its event stream (the session cookie authenticates the GET) and updates its state and
// progress bar without a reload; a stream is closed once its job reaches a terminal state.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var terminal = ["succeeded", "failed", "cancelled"];

  function show(row, job) {
    row.dataset.state = job.state;
    var state = row.querySelector(".state");
    state.textContent = job.state;
    state.className = "state " + job.state;
    var fraction = job.progress.fraction || 0;
    row.querySelector("progress").value = fraction;
    row.querySelector(".percent").textContent = Math.round(fraction * 100) + "%";
    var model = row.querySelector(".model");
    if (job.model_id && model && !model.firstChild) {
      var link = document.createElement("a");
      link.href = row.dataset.ui + "/models#" + job.model_id;
      link.textContent = job.model_id;
      model.appendChild(link);
    }
  }

  document.querySelectorAll(".job-row[data-events]").forEach(function (row) {
    var source = new EventSource(row.dataset.events);
    ["state", "progress"].forEach(function (name) {
      source.addEventListener(name, function (event) {
        var job = JSON.parse(event.data);
        show(row, job);
        if (terminal.indexOf(job.state) >= 0) source.close();
      });
    });
  });
})();
