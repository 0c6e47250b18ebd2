// Line charts as inline SVG, no library: window.aamCurves.draw(svg, series) with series
// [{name, className, points: [[x, y], ...]}]; each point is a circle (class "point") so a
// single epoch still shows, and the element's data-points says how many it drew per series.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 320, H = 180, LEFT = 44, RIGHT = 8, TOP = 8, BOTTOM = 34;

  function node(name, attributes, text) {
    var element = document.createElementNS(NS, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function label(value) {
    return Math.abs(value) >= 1000 || (value !== 0 && Math.abs(value) < 0.01)
      ? value.toExponential(1) : String(Number(value.toPrecision(3)));
  }

  function draw(svg, series) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var all = [];
    series.forEach(function (s) { all = all.concat(s.points); });
    svg.dataset.points = series.map(function (s) { return s.name + ":" + s.points.length; }).join(",");
    if (!all.length) {
      svg.appendChild(node("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no epochs yet"));
      return;
    }
    var xs = all.map(function (p) { return p[0]; }), ys = all.map(function (p) { return p[1]; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    var px = function (x) { return LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT); };
    var py = function (y) { return TOP + (y1 - y) / (y1 - y0) * (H - TOP - BOTTOM); };
    var bottom = H - BOTTOM;
    svg.appendChild(node("line", { "class": "axis", x1: LEFT, y1: TOP, x2: LEFT, y2: bottom }));
    svg.appendChild(node("line", { "class": "axis", x1: LEFT, y1: bottom, x2: W - RIGHT, y2: bottom }));
    [y0, y1].forEach(function (y) {
      svg.appendChild(node("text", { x: LEFT - 4, y: py(y) + 3, "text-anchor": "end" }, label(y)));
    });
    [x0, x1].forEach(function (x) {
      svg.appendChild(node("text", { x: px(x), y: bottom + 12, "text-anchor": "middle" }, label(x)));
    });
    svg.appendChild(node("text", { x: W - RIGHT, y: H - 2, "text-anchor": "end" }, "epoch"));
    series.forEach(function (s, i) {
      if (!s.points.length) return;
      var coordinates = s.points.map(function (p) { return px(p[0]) + "," + py(p[1]); }).join(" ");
      svg.appendChild(node("polyline", { "class": "line " + s.className, points: coordinates }));
      s.points.forEach(function (p) {
        svg.appendChild(node("circle", { "class": "point " + s.className, cx: px(p[0]), cy: py(p[1]), r: 2.5 }));
      });
      var x = LEFT + 8 + i * 90;
      svg.appendChild(node("rect", { "class": s.className, x: x, y: H - 11, width: 10, height: 3 }));
      svg.appendChild(node("text", { x: x + 14, y: H - 7 }, s.name));
    });
  }

  window.aamCurves = { draw: draw };
})();
