// A job's page, live: state, progress, latest loss, error and log lines from the job's event
// stream (GET /jobs/{id}/events, authenticated by the session cookie), without reloading; the
// loss and metric curves (GET /jobs/{id}/metrics, drawn by curves.js) and a train job's baseline
// table (/ui/jobs/{id}/baselines) fetched again on each event; a cross_validate job's fold and
// ETA as they change, and its results (/ui/jobs/{id}/cross-validation) once it has finished.
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root) return;
  var terminal = ["succeeded", "failed", "cancelled"];
  var since = Number(root.dataset.since || 0);
  var text = function (id, value) {
    var node = document.getElementById(id);
    if (node) node.textContent = value;
  };
  var fmt = function (value) {
    return typeof value === "number" ? value.toPrecision(4) : String(value);
  };

  function followLog() {
    fetch(root.dataset.logs + "?since=" + since, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (logs) {
        if (!logs || !logs.lines.length) return;
        var log = document.getElementById("log");
        logs.lines.forEach(function (line) { log.textContent += line.message + "\n"; });
        since = logs.next_since;
        log.scrollTop = log.scrollHeight;
      })
      .catch(function () {});
  }

  var SPLITS = [["train", "train"], ["validation", "validation"]];
  var SKIP = ["epoch", "split", "loss"];

  function series(records, name) {
    return SPLITS.map(function (pair) {
      var points = records.filter(function (r) {
        return r.split === pair[0] && typeof r[name] === "number" && isFinite(r[name]);
      }).map(function (r) { return [r.epoch, r[name]]; });
      return { name: pair[1], className: pair[0], points: points };
    });
  }

  function monitored(records) {
    if (root.dataset.monitor) return root.dataset.monitor;
    for (var i = 0; i < records.length; i++) {
      var names = Object.keys(records[i]).filter(function (k) {
        return SKIP.indexOf(k) < 0 && k.indexOf("loss") !== 0 && typeof records[i][k] === "number";
      });
      if (names.length) return names[0];
    }
    return "";
  }

  function drawCurves() {
    if (!window.aamCurves) return;
    fetch(root.dataset.metrics, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (records) {
        if (!records) return;
        window.aamCurves.draw(document.getElementById("loss-curve"), series(records, "loss"));
        var name = monitored(records);
        if (name) text("metric-name", name + " per epoch");
        window.aamCurves.draw(document.getElementById("metric-curve"), name ? series(records, name) : []);
      })
      .catch(function () {});
  }

  function swap(url, id) {
    if (!url) return;
    fetch(url, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (html) {
        if (html !== null) document.getElementById(id).innerHTML = html;
      })
      .catch(function () {});
  }

  function showBaselines() { swap(root.dataset.baselines, "baselines"); }

  // As app/ui/cv_view.py fold_label and the page's eta macro say it
  function foldLabel(progress) {
    if (!progress.folds || !progress.fold) return "";
    if (progress.phase === "refit") return "refit on every sample";
    return "fold " + progress.fold + " of " + progress.folds;
  }
  function etaLabel(job) {
    var seconds = job.progress.eta_seconds;
    if (seconds === null || seconds === undefined || terminal.indexOf(job.state) >= 0) return "";
    var shown = seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min";
    return "about " + shown + " left";
  }

  if (!root.dataset.results) drawCurves();

  function show(job, name) {
    var state = document.getElementById("state");
    state.textContent = job.state;
    state.className = "state " + job.state;
    var fraction = job.progress.fraction || 0;
    document.getElementById("progress-bar").value = fraction;
    text("progress", Math.round(fraction * 100) + "%");
    if (job.progress.epochs) text("epoch", "epoch " + (job.progress.epoch || 0) + "/" + job.progress.epochs);
    if (root.dataset.results) text("fold", foldLabel(job.progress));
    text("eta", etaLabel(job));
    var train = job.metrics.train || {}, validation = job.metrics.validation || {};
    if ("loss" in train || "loss" in validation) {
      text("loss", ("loss" in train ? fmt(train.loss) : "–") +
        ("loss" in validation ? " (validation " + fmt(validation.loss) + ")" : ""));
    }
    if (job.error) {
      var error = document.getElementById("error");
      error.textContent = job.error.type + ": " + (job.error.field ? job.error.field + ": " : "") + job.error.detail;
      error.hidden = false;
    }
    if (job.model_id) {
      var model = document.getElementById("model");
      model.textContent = "";
      var link = document.createElement("a");
      link.href = root.dataset.ui + "/models#" + job.model_id;
      link.textContent = job.model_id;
      model.appendChild(link);
    }
    if (terminal.indexOf(job.state) >= 0) {
      var cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    }
    followLog();
    if (root.dataset.results) {
      if (terminal.indexOf(job.state) >= 0) swap(root.dataset.results, "cross-validation");
      return;
    }
    drawCurves();
    var fitted = job.metrics.baseline && Object.keys(job.metrics.baseline).length;
    if (name === "state" || fitted || terminal.indexOf(job.state) >= 0) showBaselines();
  }

  if (!window.EventSource) return;
  var source = new EventSource(root.dataset.events);
  ["state", "progress"].forEach(function (name) {
    source.addEventListener(name, function (event) {
      var job = JSON.parse(event.data);
      show(job, name);
      if (terminal.indexOf(job.state) >= 0) source.close();
    });
  });
})();
