// The new-job and cross-validate forms: show the fields of the chosen kind, offer the chosen
// dataset's metadata columns as train targets (with the task their kind suggests) and, where
// the form has one, as the group column (with a blank choice first, its data-blank).
(function () {
  "use strict";
  var form = document.querySelector("form.job-form");
  if (!form) return;
  var columns = JSON.parse(document.getElementById("columns").textContent);
  var kind = form.elements.kind, dataset = form.elements.dataset_id;
  var column = form.elements.target_column, task = form.elements.task;
  var group = form.elements.group_column;

  function showKind() {
    form.querySelectorAll("fieldset[data-kind]").forEach(function (node) {
      node.hidden = node.dataset.kind.split(" ").indexOf(kind.value) < 0;
    });
  }
  function option(value, label, chosen) {
    var node = document.createElement("option");
    node.value = value;
    node.textContent = label;
    node.selected = value === chosen;
    return node;
  }
  function fill(select) {
    var chosen = select.dataset.value || select.value;
    select.textContent = "";
    if (select.dataset.blank) select.appendChild(option("", select.dataset.blank, chosen));
    (columns[dataset.value] || []).forEach(function (c) {
      var node = option(c.name, c.name + " (" + c.kind + ")", chosen);
      node.dataset.columnKind = c.kind;
      select.appendChild(node);
    });
    select.dataset.value = "";
  }
  function fillColumns() {
    fill(column);
    if (group) fill(group);
    suggestTask();
  }
  function suggestTask() {
    var chosen = column.options[column.selectedIndex];
    if (!chosen) return;
    var numeric = chosen.dataset.columnKind === "numeric";
    task.value = numeric ? "regression" : "classification";
    task.querySelector("[value=regression]").disabled = !numeric;
  }
  kind.addEventListener("change", showKind);
  dataset.addEventListener("change", fillColumns);
  column.addEventListener("change", suggestTask);
  showKind();
  fillColumns();
})();
