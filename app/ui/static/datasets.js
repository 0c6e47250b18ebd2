// The upload form posted with XMLHttpRequest so that a large table shows its upload progress.
// The form (CSRF field included) is sent as it is; the server answers a redirect to the new
// dataset (followed: the browser goes there) or the list page with a message (shown as it
// came). Without JavaScript the plain form posts the same fields.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const box = document.getElementById("upload-progress");
  if (!form || !box || !window.FormData) return;
  const bar = box.querySelector("progress");
  const percent = document.getElementById("upload-percent");
  const button = form.querySelector("button[type=submit]");

  function show(done, total) {
    const value = total ? Math.floor((100 * done) / total) : 0;
    bar.value = value;
    percent.textContent = value >= 100 ? "100%: checking the files…" : value + "%";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) show(e.loaded, e.total);
    });
    xhr.upload.addEventListener("load", function () { show(1, 1); });
    xhr.addEventListener("load", function () {
      const landed = xhr.responseURL && xhr.responseURL !== form.action;
      if (xhr.status < 400 && landed) {
        window.location.assign(xhr.responseURL); // the dataset's page
        return;
      }
      document.open(); // the list again, with the server's message
      document.write(xhr.responseText);
      document.close();
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      box.hidden = true;
      window.alert("the upload failed: the server could not be reached");
    });
    button.disabled = true;
    box.hidden = false;
    show(0, 1);
    xhr.send(new FormData(form));
  });
})();
