/* 邻里 Linli: the dashboard's charts, drawn as SVG from the JSON the page carries. No library, no CDN. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var PALETTE = ["#1a73e8", "#d93025", "#188038", "#e8a400", "#9334e6", "#00838f", "#c2185b", "#5f6368"];
  var URGENCY = { red: ["#d93025", "红"], yellow: ["#e8a400", "黄"], blue: ["#1a73e8", "蓝"] };

  function el(name, attrs, parent, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function percent(value) { return (value * 100).toFixed(1) + "%"; }

  function legend(container, names, colour) {
    var box = document.createElement("div");
    box.className = "legend";
    names.forEach(function (name, i) {
      var item = document.createElement("span");
      var swatch = el("svg", { width: 10, height: 10, "aria-hidden": "true" }, item);
      el("rect", { width: 10, height: 10, rx: 2, fill: colour(i) }, swatch);
      item.appendChild(document.createTextNode(" " + name));
      box.appendChild(item);
    });
    container.appendChild(box);
  }

  /* One line per team over the buckets; a missing value (nothing to count that day) breaks the line. */
  function lineChart(container, labels, teams, values) {
    var W = Math.max(280, Math.round(container.clientWidth || 420)), H = 220, left = 44, right = 16, top = 10,
        bottom = 28;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "plot", "data-points": 0 }, container);
    var plotW = W - left - right, plotH = H - top - bottom;
    function x(i) { return labels.length < 2 ? left + plotW / 2 : left + (i * plotW) / (labels.length - 1); }
    function y(v) { return top + plotH * (1 - v); }
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      el("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), "class": v === 0 ? "axis" : "grid" }, svg);
      el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, svg, Math.round(v * 100) + "%");
    });
    var every = Math.max(1, Math.ceil(labels.length / Math.max(2, Math.floor(plotW / 56))));
    var last = labels.length - 1;
    labels.forEach(function (label, i) {
      /* the last day always gets its label; its neighbour gives way rather than overlap */
      if ((i % every === 0 && (i === last || last - i >= every)) || i === last) {
        el("text", { x: x(i), y: H - 8, "text-anchor": "middle" }, svg, label);
      }
    });
    var points = 0;
    values.forEach(function (series, t) {
      var colour = PALETTE[t % PALETTE.length];
      var group = el("g", { "class": "series-group", "data-team": teams[t], "data-values": JSON.stringify(series) }, svg);
      var d = "", pen = "M";
      series.forEach(function (v, i) {
        if (v === null || v === undefined) { pen = "M"; return; }
        d += pen + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = "L";
      });
      if (d) { el("path", { d: d.trim(), stroke: colour, "class": "series" }, group); }
      series.forEach(function (v, i) {
        if (v === null || v === undefined) { return; }
        var dot = el("circle", { cx: x(i), cy: y(v), r: 3, fill: colour, "data-value": v }, group);
        el("title", {}, dot, teams[t] + " " + labels[i] + "：" + percent(v));
        points += 1;
      });
    });
    svg.setAttribute("data-points", points);
    if (!points) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg, "暂无数据");
    }
    legend(container, teams, function (i) { return PALETTE[i % PALETTE.length]; });
  }

  /* Open orders per grid, stacked 红 / 黄 / 蓝. */
  function barChart(container, data) {
    var rows = data.grids.length;
    if (!rows) { return; }
    var W = Math.max(320, Math.round(container.clientWidth || 840)), bar = 16, gap = 8, left = 140, right = 120,
        top = 4;
    var H = top + rows * (bar + gap);
    var totals = data.grids.map(function (_, i) {
      return data.counts.red[i] + data.counts.yellow[i] + data.counts.blue[i];
    });
    var most = Math.max.apply(null, totals.concat([1]));
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "plot", "data-bars": rows }, container);
    data.grids.forEach(function (grid, i) {
      var yPos = top + i * (bar + gap), xPos = left;
      el("text", { x: left - 8, y: yPos + bar - 4, "text-anchor": "end" }, svg, grid);
      ["red", "yellow", "blue"].forEach(function (u) {
        var n = data.counts[u][i];
        if (!n) { return; }
        var width = ((W - left - right) * n) / most;
        var rect = el("rect", { x: xPos, y: yPos, width: width, height: bar, fill: URGENCY[u][0], "data-urgency": u,
                                "data-count": n }, svg);
        el("title", {}, rect, grid + " " + URGENCY[u][1] + " " + n);
        xPos += width;
      });
      el("text", { x: xPos + 6, y: yPos + bar - 4 }, svg,
         totals[i] + (data.overdue[i] ? "（超时 " + data.overdue[i] + "）" : ""));
    });
    legend(container, ["红", "黄", "蓝"], function (i) { return URGENCY[["red", "yellow", "blue"][i]][0]; });
  }

  function draw() {
    var chart = readJson("chart-data");
    if (chart) {
      Object.keys(chart.metrics).forEach(function (metric) {
        var container = document.querySelector('[data-chart="' + metric + '"]');
        if (container) { lineChart(container, chart.labels, chart.teams, chart.metrics[metric].values); }
      });
    }
    var board = readJson("board-data");
    var bars = document.querySelector('[data-chart="board"]');
    if (board && bars) { barChart(bars, board); }
    document.body.setAttribute("data-charts", "drawn");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
}());
