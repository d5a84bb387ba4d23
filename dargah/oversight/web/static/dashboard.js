// The dashboard's charts, drawn with Chart.js from the JSON in #dashboard-data.
// The page's figures and tables are in the HTML; Chart.js (data-chartjs) is fetched once the
// first chart comes on screen, then every chart is drawn, each in a task of its own, so the
// first paint never waits for a chart. Marks have at least 3:1 contrast on white (WCAG 1.4.11).
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  var me = document.currentScript;
  if (!source || !me) { return; }
  var data = JSON.parse(source.textContent);
  var fa = new Intl.NumberFormat("fa-IR");
  var faYear = new Intl.NumberFormat("fa-IR", { useGrouping: false });
  var rtl = { rtl: true, textDirection: "rtl" };
  var waiting = [];
  var loading = false;

  function faDigits(text) {
    return text.replace(/[0-9]/g, function (d) { return fa.format(Number(d)); });
  }

  function options(extra) {
    var o = { responsive: true, maintainAspectRatio: false, animation: false,
              plugins: { legend: rtl, tooltip: rtl }, scales: { x: { reverse: true } } };
    for (var k in extra) { o.scales[k] = extra[k]; }
    o.scales.y.ticks = o.scales.y.ticks || {};
    o.scales.y.ticks.callback = function (v) { return fa.format(v); };  // Persian digits
    return o;
  }

  var configs = {
    "chart-plan": function () {
      var plan = data.plan;
      return {
        type: "bar",
        data: {
          labels: plan.years.map(function (y) { return faYear.format(Number(y)); }),
          datasets: [
            { label: "هدف پایان سال", data: plan.targets, backgroundColor: "#4a86c5" },
            { label: "هوشمند امروز", data: plan.years.map(function () { return plan.smart; }),
              type: "line", borderColor: "#116329", pointRadius: 0 },
            { label: "انتظار تا امروز", data: plan.years.map(function () { return plan.expected; }),
              type: "line", borderColor: "#a40e26", borderDash: [6, 4], pointRadius: 0 }
          ]
        },
        options: options({ y: { beginAtZero: true, ticks: { precision: 0 } } })
      };
    },
    "chart-levels": function () {
      return {
        type: "bar",
        data: {
          labels: data.levels.labels,
          datasets: [
            { label: "تأییدشده", data: data.levels.verified, backgroundColor: "#0a58a8" },
            { label: "اعلام‌شده", data: data.levels.declared, backgroundColor: "#6e7781" }
          ]
        },
        options: options({ y: { beginAtZero: true, ticks: { precision: 0 } } })
      };
    },
    "chart-satisfaction": function () {
      var months = data.satisfaction;
      return {
        type: months.length < 3 ? "bar" : "line",  // one or two months: bars, never a bare dot
        data: {
          labels: months.map(function (m) { return faDigits(m.month); }),
          datasets: [{ label: "سهم امتیاز ۴ و ۵", borderColor: "#6f42c1", backgroundColor: "#6f42c1",
                       pointRadius: 3,
                       data: months.map(function (m) { return m.share === null ? null : Math.round(m.share * 1000) / 10; }) }]
        },
        options: options({ y: { min: 0, max: 100 } })
      };
    }
  };

  function drawNext() {
    var canvas = waiting.shift();
    if (!canvas) { return; }
    if (!Chart.getChart(canvas)) { new Chart(canvas, configs[canvas.id]()); }
    if (waiting.length) { setTimeout(drawNext, 0); }
  }

  function draw(canvas) {
    waiting.push(canvas);
    if (typeof Chart !== "undefined") { setTimeout(drawNext, 0); return; }
    if (loading) { return; }
    loading = true;
    var script = document.createElement("script");
    script.src = me.getAttribute("data-chartjs");
    script.onload = function () {
      Chart.defaults.font.family = "Vazirmatn, Tahoma, sans-serif";
      Chart.defaults.locale = "fa-IR";
      Chart.defaults.color = "#1f2328";
      drawNext();
    };
    document.head.appendChild(script);
  }

  var canvases = Object.keys(configs).map(function (id) { return document.getElementById(id); })
    .filter(function (c) { return c; });
  if (!("IntersectionObserver" in window)) { canvases.forEach(draw); return; }
  // the first chart on screen fetches Chart.js; then every chart is drawn, one task each
  var seen = new IntersectionObserver(function (entries) {
    if (!entries.some(function (e) { return e.isIntersecting; })) { return; }
    seen.disconnect();
    canvases.forEach(draw);
  });
  canvases.forEach(function (c) { seen.observe(c); });
})();
