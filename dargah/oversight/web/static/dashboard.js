// The dashboard's charts, drawn with Chart.js from the JSON in #dashboard-data.
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var fa = new Intl.NumberFormat("fa-IR");
  var faYear = new Intl.NumberFormat("fa-IR", { useGrouping: false });
  Chart.defaults.font.family = "Vazirmatn, Tahoma, sans-serif";
  Chart.defaults.locale = "fa-IR";
  Chart.defaults.animation = false;
  var rtl = { rtl: true, textDirection: "rtl" };

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { new Chart(canvas, config); }
  }

  var plan = data.plan;
  draw("chart-plan", {
    type: "bar",
    data: {
      labels: plan.years.map(function (y) { return faYear.format(Number(y)); }),
      datasets: [
        { label: "هدف پایان سال", data: plan.targets, backgroundColor: "#9ec5fe" },
        { label: "هوشمند امروز", data: plan.years.map(function () { return plan.smart; }),
          type: "line", borderColor: "#198754", pointRadius: 0 },
        { label: "انتظار تا امروز", data: plan.years.map(function () { return plan.expected; }),
          type: "line", borderColor: "#dc3545", borderDash: [6, 4], pointRadius: 0 }
      ]
    },
    options: { plugins: { legend: rtl, tooltip: rtl }, scales: { x: { reverse: true } } }
  });

  draw("chart-levels", {
    type: "bar",
    data: {
      labels: data.levels.labels,
      datasets: [
        { label: "تأییدشده", data: data.levels.verified, backgroundColor: "#0a58a8" },
        { label: "اعلام‌شده", data: data.levels.declared, backgroundColor: "#adb5bd" }
      ]
    },
    options: { plugins: { legend: rtl, tooltip: rtl }, scales: { x: { reverse: true } } }
  });

  draw("chart-satisfaction", {
    type: "line",
    data: {
      labels: data.satisfaction.map(function (m) { return m.month.replace(/[0-9]/g, function (d) { return fa.format(Number(d)); }); }),
      datasets: [{ label: "سهم امتیاز ۴ و ۵", borderColor: "#6f42c1",
                   data: data.satisfaction.map(function (m) { return m.share === null ? null : Math.round(m.share * 1000) / 10; }) }]
    },
    options: { plugins: { legend: rtl, tooltip: rtl },
               scales: { x: { reverse: true }, y: { min: 0, max: 100 } } }
  });
})();
