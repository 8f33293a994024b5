/* Revenue page charts: each <canvas> gets the Chart.js chart its JSON spec (web/charts.py) describes.
   Values arrive as the reports' decimal strings; they are parsed only to place points, and the
   tooltips show the original strings so no figure on screen is a float's rounding. */
(function () {
  "use strict";
  var specs = document.getElementById("revenue-charts");
  if (!specs || typeof Chart === "undefined") return;

  function axisTitle(text) {
    return { display: true, text: text, color: "#3b434b", font: { weight: "600" } };
  }

  function build(spec) {
    var canvas = document.getElementById(spec.id);
    if (!canvas) return;
    var stacked = !!spec.stacked;
    var datasets = spec.series.map(function (s) {
      return {
        label: s.label, data: s.values.map(Number), shown: s.values,
        backgroundColor: s.colour, borderColor: s.colour, borderWidth: spec.type === "line" ? 2 : 0,
        pointRadius: spec.type === "line" ? 3 : 0, tension: 0, fill: false, stack: stacked ? "movements" : undefined
      };
    });
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + item.dataset.shown[item.dataIndex];
              }
            }
          }
        },
        scales: {
          x: { stacked: stacked, title: axisTitle(spec.x_title), ticks: { autoSkip: true, maxRotation: 45 } },
          y: { stacked: stacked, beginAtZero: true, title: axisTitle(spec.y_title),
               ticks: { callback: function (v) { return Number(v).toLocaleString("en-US"); } } }
        }
      }
    });
  }

  JSON.parse(specs.textContent).forEach(build);
})();
