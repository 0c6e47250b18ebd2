// The new-job form: show the fields of the chosen kind, and offer the chosen dataset's metadata
// columns as train targets with the task their kind suggests.
(function () {
  "use strict";
  var form = document.getElementById("job-form");
  if (!form) return;
  var columns = JSON.parse(document.getElementById("columns").textContent);
  var kind = form.elements.kind, dataset = form.elements.dataset_id;
  var column = form.elements.target_column, task = form.elements.task;

  function showKind() {
    form.querySelectorAll("[data-kind]").forEach(function (node) {
      node.hidden = node.dataset.kind.split(" ").indexOf(kind.value) < 0;
    });
  }
  function fillColumns() {
    var chosen = column.dataset.value || column.value;
    column.textContent = "";
    (columns[dataset.value] || []).forEach(function (c) {
      var option = document.createElement("option");
      option.value = c.name;
      option.textContent = c.name + " (" + c.kind + ")";
      option.dataset.kind = c.kind;
      option.selected = c.name === chosen;
      column.appendChild(option);
    });
    column.dataset.value = "";
    suggestTask();
  }
  function suggestTask() {
    var option = column.options[column.selectedIndex];
    if (!option) return;
    task.value = option.dataset.kind === "numeric" ? "regression" : "classification";
    task.querySelector("[value=regression]").disabled = option.dataset.kind !== "numeric";
  }
  kind.addEventListener("change", showKind);
  dataset.addEventListener("change", fillColumns);
  column.addEventListener("change", suggestTask);
  showKind();
  fillColumns();
})();
